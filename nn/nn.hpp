// Everything of the nn library in one include.
#pragma once

#include "nn/activation.hpp"
#include "nn/data.hpp"
#include "nn/error.hpp"
#include "nn/init.hpp"
#include "nn/io.hpp"
#include "nn/linear.hpp"
#include "nn/loss.hpp"
#include "nn/module.hpp"
#include "nn/optim.hpp"
#include "nn/penalty.hpp"
#include "nn/second_order.hpp"
#include "nn/sequential.hpp"
#include "nn/train.hpp"
#if defined(DELTAGRAD_HAVE_MPI)
#include "nn/distributed.hpp"
#endif
