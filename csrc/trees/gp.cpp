// See gp.h. Layout: the training points are transposed into columns padded to a multiple of
// the vector width (padding points carry coefficient 0), then for each candidate row the squared
// distances to every point are accumulated one dimension at a time, and the kernel and the dot
// product with the coefficients follow in one pass, four points per vector.
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
#define REGMIX_GP_TARGET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define REGMIX_GP_TARGET_CLONES
#endif

typedef double Vd __attribute__((vector_size(32)));
typedef int64_t Vi __attribute__((vector_size(32)));
constexpr int64_t kW = 4;  // lanes of Vd
constexpr int64_t kRowsPerThreadMin = 256;

__attribute__((always_inline)) inline Vd splat(double v) { return Vd{} + v; }

// exp(x) for x in [-708, 0]: x = k ln2 + r, |r| <= ln2 / 2, e^r by its Taylor polynomial of
// degree 12 (remainder < 2e-16 relative), 2^k assembled in the exponent bits.
__attribute__((always_inline)) inline Vd exp_nonpositive(Vd x) {
    x = x < splat(-708.0) ? splat(-708.0) : x;
    const Vd shifter = splat(6755399441055744.0);  // 1.5 * 2^52: adding it rounds to an integer
    Vd kd = x * splat(1.4426950408889634) + shifter;
    Vi bits;
    std::memcpy(&bits, &kd, sizeof bits);
    kd -= shifter;
    const Vd r = (x - kd * splat(0.6931471803691238)) - kd * splat(1.9082149292705877e-10);
    Vd p = splat(1.0 / 479001600.0);
    const double c[12] = {1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0,
                          1.0 / 120.0,      1.0 / 24.0,      1.0 / 6.0,      0.5,            1.0,          1.0};
    for (double ci : c) p = p * r + ci;
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

REGMIX_GP_TARGET_CLONES
void rows_kernel(const double* q, int64_t r0, int64_t r1, const double* tt, int64_t mp, int64_t d,
                 const double* coef, Kernel kernel, double* out, double* d2) {
    const Vd zero = splat(0.0);
    for (int64_t i = r0; i < r1; ++i) {
        const double* qi = q + i * d;
        for (int64_t j = 0; j < mp; j += kW) std::memcpy(d2 + j, &zero, sizeof zero);
        for (int64_t k = 0; k < d; ++k) {
            const Vd qk = splat(qi[k]);
            const double* col = tt + k * mp;
            for (int64_t j = 0; j < mp; j += kW) {
                Vd a, c;
                std::memcpy(&a, d2 + j, sizeof a);
                std::memcpy(&c, col + j, sizeof c);
                const Vd diff = qk - c;
                a += diff * diff;
                std::memcpy(d2 + j, &a, sizeof a);
            }
        }
        Vd acc = zero;
        for (int64_t j = 0; j < mp; j += kW) {
            Vd a, w;
            std::memcpy(&a, d2 + j, sizeof a);
            std::memcpy(&w, coef + j, sizeof w);
            Vd kv;
            if (kernel == Kernel::SquaredExponential) {
                kv = exp_nonpositive(splat(-0.5) * a);
            } else {
                const Vd s = vsqrt(a * splat(kernel == Kernel::Matern15 ? 3.0 : 5.0));
                const Vd e = exp_nonpositive(-s);
                kv = kernel == Kernel::Matern15 ? (splat(1.0) + s) * e
                                                : (splat(1.0) + s + s * s * splat(1.0 / 3.0)) * e;
            }
            acc += w * kv;
        }
        out[i] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    }
}

}  // namespace

void posterior_mean(const double* q, int64_t n, const double* t, int64_t m, int64_t d, const double* coef,
                    Kernel kernel, double* out, int num_threads) {
    if (n < 0 || m < 1 || d < 1) throw std::invalid_argument("posterior_mean: needs n >= 0, m >= 1, d >= 1");
    if (kernel != Kernel::Matern15 && kernel != Kernel::Matern25 && kernel != Kernel::SquaredExponential) {
        throw std::invalid_argument("posterior_mean: unknown kernel");
    }
    const int64_t mp = (m + kW - 1) / kW * kW;
    std::vector<double> tt(static_cast<size_t>(d * mp), 0.0), cp(static_cast<size_t>(mp), 0.0);
    for (int64_t j = 0; j < m; ++j) {
        for (int64_t k = 0; k < d; ++k) tt[static_cast<size_t>(k * mp + j)] = t[j * d + k];
        cp[static_cast<size_t>(j)] = coef[j];
    }
    int64_t threads = num_threads > 0 ? num_threads : static_cast<int64_t>(std::thread::hardware_concurrency());
    threads = std::max<int64_t>(1, std::min(threads, n / kRowsPerThreadMin));
    auto work = [&](int64_t r0, int64_t r1) {
        std::vector<double> d2(static_cast<size_t>(mp));
        rows_kernel(q, r0, r1, tt.data(), mp, d, cp.data(), kernel, out, d2.data());
    };
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
