// The n x n work of the GP's marginal likelihood (see gp_fit.h): one exponential per pair of
// rows (the lower triangle, mirrored), the gradient from the lower triangle alone. Single
// thread, fixed summation order: the same bits on every run.
#include "gp_fit.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace regmix::gp {

namespace {

struct KernelAndFactor {
    double k;
    double f;
};

inline KernelAndFactor kernel_and_factor(double r2, Kernel kernel) {
    if (kernel == Kernel::SquaredExponential) {
        const double e = std::exp(-0.5 * r2);
        return {e, e};
    }
    const double s = std::sqrt(r2 * (kernel == Kernel::Matern15 ? 3.0 : 5.0));
    const double e = std::exp(-s);
    if (kernel == Kernel::Matern15) return {(1.0 + s) * e, 3.0 * e};
    return {(1.0 + s + s * s / 3.0) * e, (5.0 / 3.0) * (1.0 + s) * e};
}

}  // namespace

void kernel_matrix(const double* u, int64_t n, int64_t d, Kernel kernel, double amplitude, double noise,
                   double* k, double* factor) {
    for (int64_t i = 0; i < n; ++i) {
        const double* ui = u + i * d;
        double* ki = k + i * n;
        double* fi = factor + i * n;
        for (int64_t j = 0; j < i; ++j) {
            const double* uj = u + j * d;
            double r2 = 0.0;
            for (int64_t c = 0; c < d; ++c) {
                const double diff = ui[c] - uj[c];
                r2 += diff * diff;
            }
            const KernelAndFactor kf = kernel_and_factor(r2, kernel);
            ki[j] = amplitude * kf.k;
            fi[j] = kf.f;
        }
        ki[i] = amplitude + noise;
        for (int64_t j = i; j < n; ++j) fi[j] = 0.0;
    }
    // The upper triangle, mirrored in blocks (both reads and writes stay in cache).
    constexpr int64_t kBlock = 64;
    for (int64_t ib = 0; ib < n; ib += kBlock) {
        for (int64_t jb = ib; jb < n; jb += kBlock) {
            const int64_t ie = std::min(ib + kBlock, n), je = std::min(jb + kBlock, n);
            for (int64_t i = ib; i < ie; ++i) {
                for (int64_t j = std::max(jb, i + 1); j < je; ++j) k[i * n + j] = k[j * n + i];
            }
        }
    }
}

void nll_gradient(const double* k, const double* factor, const double* inv, bool inv_upper, const double* alpha,
                  const double* u, int64_t n, int64_t d, double amplitude, double noise, double* grad) {
    std::vector<double> ls(static_cast<size_t>(d), 0.0);
    double amp_sum = 0.0;   // sum over i > j of W_ij K_ij
    double diag_sum = 0.0;  // sum over i of W_ii
    for (int64_t i = 0; i < n; ++i) {
        const double* ui = u + i * d;
        const double* ki = k + i * n;
        const double* fi = factor + i * n;
        for (int64_t j = 0; j < i; ++j) {
            const double inv_ij = inv_upper ? inv[j * n + i] : inv[i * n + j];
            const double w = alpha[i] * alpha[j] - inv_ij;
            amp_sum += w * ki[j];
            const double m = amplitude * w * fi[j];
            const double* uj = u + j * d;
            for (int64_t c = 0; c < d; ++c) {
                const double diff = ui[c] - uj[c];
                ls[static_cast<size_t>(c)] += m * (diff * diff);
            }
        }
        diag_sum += alpha[i] * alpha[i] - inv[i * n + i];
    }
    // 0.5 sum_ij W_ij dK_ij over both triangles = the lower triangle's sum + half the diagonal's.
    grad[0] = amp_sum + 0.5 * amplitude * diag_sum;
    for (int64_t c = 0; c < d; ++c) grad[1 + c] = ls[static_cast<size_t>(c)];
    grad[d + 1] = 0.5 * noise * diag_sum;
}

}  // namespace regmix::gp
