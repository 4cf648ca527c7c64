// Everything of the autodiff library in one include.
#pragma once

#include "autodiff/array.hpp"
#include "autodiff/blas.hpp"
#include "autodiff/blas_summary.hpp"
#include "autodiff/check.hpp"
#include "autodiff/custom.hpp"
#include "autodiff/error.hpp"
#include "autodiff/explorer.hpp"
#include "autodiff/format.hpp"
#include "autodiff/forward.hpp"
#include "autodiff/gradients.hpp"
#include "autodiff/inspect.hpp"
#include "autodiff/second_order.hpp"
#include "autodiff/tape.hpp"
#include "autodiff/tensor.hpp"
#include "autodiff/var.hpp"
#include "autodiff/ops/ops.hpp"
