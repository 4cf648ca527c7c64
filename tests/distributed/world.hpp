// The process group every distributed test case runs in (made once, in main).
#pragma once

#include "nn/distributed.hpp"

nn::DistributedContext& world();
