// Compiled posterior mean of a Gaussian process with a Matérn kernel (the GP part of the
// default regressor `lgbm_gp`), for scoring many candidate mixtures. No Python headers.
//
//   out[i] = sum_j coef[j] * k(r_ij),  r_ij = |q_i - t_j| (Euclidean; the inputs are already
//   divided by the length scales), k = Matérn 3/2, 5/2 or the squared exponential, unit
//   amplitude (fold the amplitude into coef).
//
// The exponential is a vectorised polynomial (|relative error| < 1e-15); distances below 1e-300
// and above 708 are handled exactly as numpy would to double precision.
#pragma once

#include <cstdint>

namespace regmix::gp {

enum class Kernel : int { Matern15 = 0, Matern25 = 1, SquaredExponential = 2 };

// q: [n, d] row-major; t: [m, d] row-major; coef: [m]; out: [n]. Rows are split over
// num_threads threads (0: every core). Throws std::invalid_argument on bad sizes.
void posterior_mean(const double* q, int64_t n, const double* t, int64_t m, int64_t d, const double* coef,
                    Kernel kernel, double* out, int num_threads);

}  // namespace regmix::gp
