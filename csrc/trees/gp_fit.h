// The n x n work of a Gaussian process's negative log marginal likelihood and its gradient
// (the GP part of `lgbm_gp`, fitted by L-BFGS-B in Python; the Cholesky factorisation and the
// inverse stay with LAPACK). No Python headers.
//
// Inputs u [n, d] are the standardised log-weights divided by the length scales; the kernel
// is amplitude * k(r) with k Matérn 3/2, 5/2 or the squared exponential (gp.h) of
// r = |u_i - u_j|, plus noise on the diagonal. F_ij is the factor with
// d k(r_ij) / d log(l_c) = F_ij * (u_ic - u_jc)^2.
#pragma once

#include <cstdint>

#include "gp.h"

namespace regmix::gp {

// k [n, n]: amplitude * k(r_ij), plus noise on the diagonal (symmetric, both triangles).
// factor [n, n]: F_ij below the diagonal (i > j); the rest is set to 0.
void kernel_matrix(const double* u, int64_t n, int64_t d, Kernel kernel, double amplitude, double noise,
                   double* k, double* factor);

// The gradient of the log marginal likelihood with respect to log(amplitude),
// log(length scale c) (c = 0..d-1) and log(noise), into grad [d + 2]:
//   0.5 * sum_ij W_ij dK_ij, with W = alpha alpha^T - K^-1 and dK the kernel's derivative.
// k and factor as kernel_matrix wrote them; inv: K^-1, of which only the triangle i > j (rows
// below the diagonal, row-major) and the diagonal are read when inv_upper is false, the
// triangle i < j and the diagonal when it is true.
void nll_gradient(const double* k, const double* factor, const double* inv, bool inv_upper, const double* alpha,
                  const double* u, int64_t n, int64_t d, double amplitude, double noise, double* grad);

}  // namespace regmix::gp
