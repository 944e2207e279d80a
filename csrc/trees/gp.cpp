// See gp.h. Layout: the training points are transposed into columns padded to a multiple of
// eight (padding points carry coefficient 0). Candidate rows go six at a time against eight
// points at a time: the squared distances of those 48 pairs are accumulated in registers one
// dimension at a time (each load of the points serves six rows), then the kernel and the dot
// product with the coefficients follow. The exponential's polynomial is unrolled so that the
// twelve independent chains of a tile overlap.
#include "gp.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <thread>
#include <vector>

// The vector helpers below have internal linkage and are inlined into the kernel, so the ABI
// of passing 32-byte vectors by value (GCC's -Wpsabi note for non-AVX builds) never applies.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace regmix::gp {
namespace {

#if defined(REGMIX_GP_TARGET_CLONES)
// set on the command line
#elif defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
// x86-64-v3 and v4 have fused multiply-add; the default clone computes the same fused operations
// through libm's fma (correctly rounded, so every clone gives the same bits, only slower).
#define REGMIX_GP_TARGET_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define REGMIX_GP_TARGET_CLONES
#endif

typedef double Vd __attribute__((vector_size(32)));
typedef int64_t Vi __attribute__((vector_size(32)));
constexpr int64_t kW = 4;  // lanes of Vd
constexpr int64_t kRowsPerThreadMin = 256;
constexpr int64_t kRowTile = 6;    // candidate rows sharing each load of the training points
constexpr int64_t kPointTile = 2;  // vectors of training points per step

__attribute__((always_inline)) inline Vd splat(double v) { return Vd{v, v, v, v}; }

// a * b + c rounded once, lane by lane: one vector instruction where the clone has FMA. The
// extension is built with -ffp-contract=off, so these are the only fused operations and the
// results do not depend on which clone (or which compiler's contraction choices) ran.
__attribute__((always_inline)) inline Vd vfma(Vd a, Vd b, Vd c) {
    Vd out;
    for (int64_t l = 0; l < kW; ++l) out[l] = __builtin_fma(a[l], b[l], c[l]);
    return out;
}

// exp(x) for x in [-708, 0]: x = k ln2 + r, |r| <= ln2 / 2, e^r by its Taylor polynomial of
// degree 12 (remainder < 2e-16 relative), 2^k assembled in the exponent bits.
__attribute__((always_inline)) inline Vd exp_nonpositive(Vd x) {
    x = x < splat(-708.0) ? splat(-708.0) : x;
    const Vd shifter = splat(6755399441055744.0);  // 1.5 * 2^52: adding it rounds to an integer
    Vd kd = vfma(x, splat(1.4426950408889634), shifter);
    Vi bits;
    std::memcpy(&bits, &kd, sizeof bits);
    kd -= shifter;
    const Vd r = vfma(-kd, splat(1.9082149292705877e-10), vfma(-kd, splat(0.6931471803691238), x));
    Vd p = splat(1.0 / 479001600.0);
    constexpr double c[12] = {1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0,
                          1.0 / 120.0,      1.0 / 24.0,      1.0 / 6.0,      0.5,            1.0,          1.0};
#pragma GCC unroll 12
    for (double ci : c) p = vfma(p, r, splat(ci));
    // The low bits of kd + shifter hold 2^51 + k; (that + 1023) << 52 is the exponent of 2^k.
    const Vi e = (bits + static_cast<int64_t>(1023)) << 52;
    Vd scale;
    std::memcpy(&scale, &e, sizeof scale);
    return p * scale;
}

__attribute__((always_inline)) inline Vd vsqrt(Vd v) {
    Vd out;
    for (int64_t l = 0; l < kW; ++l) out[l] = std::sqrt(v[l]);
    return out;
}

// k(r) from the squared distance r^2.
template <Kernel K>
__attribute__((always_inline)) inline Vd kernel_of(Vd d2) {
    if constexpr (K == Kernel::SquaredExponential) {
        return exp_nonpositive(splat(-0.5) * d2);
    } else {
        const Vd s = vsqrt(d2 * splat(K == Kernel::Matern15 ? 3.0 : 5.0));
        const Vd e = exp_nonpositive(-s);
        if constexpr (K == Kernel::Matern15) {
            return (splat(1.0) + s) * e;
        } else {
            return (splat(1.0) + s + s * s * splat(1.0 / 3.0)) * e;
        }
    }
}

// R candidate rows from i0 against every training point, kPointTile vectors of points at a
// time: each load of the points serves R rows and the squared distances stay in registers.
// Every row's arithmetic is the same whatever R is (lane l of its accumulator sums points
// l, l + 4, l + 8, ... in order), so the output does not depend on the tiling or the threads.
template <Kernel K, int64_t R>
__attribute__((always_inline)) inline void tile(const double* q, int64_t i0, const double* tt, int64_t mp,
                                                int64_t d, const double* coef, double* out) {
    static_assert(kPointTile == 2, "the tile keeps two vectors of points");
    Vd acc[R];
#pragma GCC unroll 8
    for (int64_t r = 0; r < R; ++r) acc[r] = splat(0.0);
    for (int64_t j = 0; j < mp; j += kW * kPointTile) {
        Vd a0[R], a1[R];
#pragma GCC unroll 8
        for (int64_t r = 0; r < R; ++r) a0[r] = a1[r] = splat(0.0);
        for (int64_t k = 0; k < d; ++k) {
            Vd c0, c1;
            std::memcpy(&c0, tt + k * mp + j, sizeof c0);
            std::memcpy(&c1, tt + k * mp + j + kW, sizeof c1);
#pragma GCC unroll 8
            for (int64_t r = 0; r < R; ++r) {
                const Vd qk = splat(q[(i0 + r) * d + k]);
                const Vd e0 = qk - c0, e1 = qk - c1;
                a0[r] = vfma(e0, e0, a0[r]);
                a1[r] = vfma(e1, e1, a1[r]);
            }
        }
        Vd w0, w1;
        std::memcpy(&w0, coef + j, sizeof w0);
        std::memcpy(&w1, coef + j + kW, sizeof w1);
#pragma GCC unroll 8
        for (int64_t r = 0; r < R; ++r) {
            acc[r] = vfma(w0, kernel_of<K>(a0[r]), acc[r]);
            acc[r] = vfma(w1, kernel_of<K>(a1[r]), acc[r]);
        }
    }
#pragma GCC unroll 8
    for (int64_t r = 0; r < R; ++r) out[i0 + r] = (acc[r][0] + acc[r][1]) + (acc[r][2] + acc[r][3]);
}

template <Kernel K>
__attribute__((always_inline)) inline void rows(const double* q, int64_t r0, int64_t r1, const double* tt,
                                                int64_t mp, int64_t d, const double* coef, double* out) {
    int64_t i = r0;
    for (; i + kRowTile <= r1; i += kRowTile) tile<K, kRowTile>(q, i, tt, mp, d, coef, out);
    for (; i < r1; ++i) tile<K, 1>(q, i, tt, mp, d, coef, out);
}

REGMIX_GP_TARGET_CLONES
void rows_kernel(const double* q, int64_t r0, int64_t r1, const double* tt, int64_t mp, int64_t d,
                 const double* coef, Kernel kernel, double* out) {
    switch (kernel) {
        case Kernel::Matern15:
            rows<Kernel::Matern15>(q, r0, r1, tt, mp, d, coef, out);
            break;
        case Kernel::Matern25:
            rows<Kernel::Matern25>(q, r0, r1, tt, mp, d, coef, out);
            break;
        case Kernel::SquaredExponential:
            rows<Kernel::SquaredExponential>(q, r0, r1, tt, mp, d, coef, out);
            break;
    }
}

}  // namespace

void posterior_mean(const double* q, int64_t n, const double* t, int64_t m, int64_t d, const double* coef,
                    Kernel kernel, double* out, int num_threads) {
    if (n < 0 || m < 1 || d < 1) throw std::invalid_argument("posterior_mean: needs n >= 0, m >= 1, d >= 1");
    if (kernel != Kernel::Matern15 && kernel != Kernel::Matern25 && kernel != Kernel::SquaredExponential) {
        throw std::invalid_argument("posterior_mean: unknown kernel");
    }
    const int64_t mp = (m + kW * kPointTile - 1) / (kW * kPointTile) * (kW * kPointTile);
    std::vector<double> tt(static_cast<size_t>(d * mp), 0.0), cp(static_cast<size_t>(mp), 0.0);
    for (int64_t j = 0; j < m; ++j) {
        for (int64_t k = 0; k < d; ++k) tt[static_cast<size_t>(k * mp + j)] = t[j * d + k];
        cp[static_cast<size_t>(j)] = coef[j];
    }
    int64_t threads = num_threads > 0 ? num_threads : static_cast<int64_t>(std::thread::hardware_concurrency());
    threads = std::max<int64_t>(1, std::min(threads, n / kRowsPerThreadMin));
    auto work = [&](int64_t r0, int64_t r1) { rows_kernel(q, r0, r1, tt.data(), mp, d, cp.data(), kernel, out); };
    if (threads == 1) {
        work(0, n);
        return;
    }
    const int64_t per = (n + threads - 1) / threads;
    std::vector<std::thread> pool;
    std::vector<std::exception_ptr> errors(static_cast<size_t>(threads));
    for (int64_t w = 0; w < threads; ++w) {
        const int64_t r0 = w * per, r1 = std::min(n, r0 + per);
        if (r0 >= r1) break;
        pool.emplace_back([&, w, r0, r1] {
            try {
                work(r0, r1);
            } catch (...) {
                errors[static_cast<size_t>(w)] = std::current_exception();
            }
        });
    }
    for (auto& th : pool) th.join();
    for (auto& e : errors) {
        if (e) std::rethrow_exception(e);
    }
}

}  // namespace regmix::gp
