// Fused CPU kernels for CustomLayerNormManualFunction (custom_layernorm.py): the same closed
// form as its eager fallback, but one pass over each row held in cache instead of a dozen
// passes over the whole tensor. custom_layernorm.py compiles this file on first use and
// calls it through ctypes; no torch headers, so it builds in about a second.
//
// Row-major X [S, M]; gamma, beta [M]; mean, rstd [S]. For each row s:
//   forward:  mean_s = mean_i x_si,  rstd_s = 1 / sqrt(mean_i (x_si - mean_s)^2 + eps),
//             y_si = (x_si - mean_s) * rstd_s * gamma_i + beta_i
//   backward: G = dY * gamma,  dx_si = rstd_s * (G_si - mean_i G_si - xhat_si * mean_i (G_si xhat_si))
//             dgamma_i = sum_s dY_si xhat_si,  dbeta_i = sum_s dY_si
#include <cmath>
#include <cstdint>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

template <typename T>
static void forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd,
                    std::int64_t S, std::int64_t M, double eps, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (std::int64_t s = 0; s < S; ++s) {
        const T* xs = x + s * M;
        T* ys = y + s * M;
        T sum = 0;
#pragma omp simd reduction(+ : sum)
        for (std::int64_t i = 0; i < M; ++i) sum += xs[i];
        const T mu = sum / M;
        T squares = 0;  // second pass over the cached row: no cancellation when |mean| >> std
#pragma omp simd reduction(+ : squares)
        for (std::int64_t i = 0; i < M; ++i) squares += (xs[i] - mu) * (xs[i] - mu);
        const T r = T(1) / std::sqrt(squares / M + T(eps));
#pragma omp simd
        for (std::int64_t i = 0; i < M; ++i) ys[i] = (xs[i] - mu) * r * gamma[i] + beta[i];
        mean[s] = mu;
        rstd[s] = r;
    }
}

// dx, dgamma or dbeta may be null: that gradient is not computed.
template <typename T>
static void backward(const T* dy, const T* x, const T* mean, const T* rstd, const T* gamma,
                     T* dx, T* dgamma, T* dbeta, std::int64_t S, std::int64_t M, int threads) {
    const bool columns = dgamma || dbeta;
    // dgamma, dbeta sum over rows: each thread sums its own rows, then the partial sums are added
    std::vector<T> partial(columns ? 2 * threads * M : 0, T(0));
#pragma omp parallel num_threads(threads)
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num();
#else
        const int t = 0;
#endif
        T* pg = columns ? partial.data() + 2 * t * M : nullptr;
        T* pb = columns ? pg + M : nullptr;
#pragma omp for schedule(static)
        for (std::int64_t s = 0; s < S; ++s) {
            const T* dys = dy + s * M;
            const T* xs = x + s * M;
            const T mu = mean[s], r = rstd[s];
            if (dx) {
                T sum_g = 0, sum_g_xhat = 0;
#pragma omp simd reduction(+ : sum_g, sum_g_xhat)
                for (std::int64_t i = 0; i < M; ++i) {
                    const T g = dys[i] * gamma[i];
                    sum_g += g;
                    sum_g_xhat += g * (xs[i] - mu) * r;
                }
                const T mean_g = sum_g / M, mean_g_xhat = sum_g_xhat / M;
                T* dxs = dx + s * M;
                if (columns) {  // dX and this thread's column sums in the same pass over the row
#pragma omp simd
                    for (std::int64_t i = 0; i < M; ++i) {
                        const T x_hat = (xs[i] - mu) * r;
                        dxs[i] = r * (dys[i] * gamma[i] - mean_g - x_hat * mean_g_xhat);
                        pg[i] += dys[i] * x_hat;
                        pb[i] += dys[i];
                    }
                } else {
#pragma omp simd
                    for (std::int64_t i = 0; i < M; ++i)
                        dxs[i] = r * (dys[i] * gamma[i] - mean_g - (xs[i] - mu) * r * mean_g_xhat);
                }
            } else if (columns) {
#pragma omp simd
                for (std::int64_t i = 0; i < M; ++i) {
                    pg[i] += dys[i] * (xs[i] - mu) * r;
                    pb[i] += dys[i];
                }
            }
        }
        if (columns) {  // every thread's partial sums are done: the omp for above ends in a barrier
#pragma omp for schedule(static)
            for (std::int64_t i = 0; i < M; ++i) {
                T g = 0, b = 0;
                for (int u = 0; u < threads; ++u) {
                    g += partial[2 * u * M + i];
                    b += partial[2 * u * M + M + i];
                }
                if (dgamma) dgamma[i] = g;
                if (dbeta) dbeta[i] = b;
            }
        }
    }
}

// When OpenMP runs fewer threads than asked, the unused partial sums stay zero.
extern "C" {
void layernorm_forward_f32(const float* x, const float* g, const float* b, float* y, float* mean, float* rstd,
                           std::int64_t S, std::int64_t M, double eps, int threads) {
    forward(x, g, b, y, mean, rstd, S, M, eps, threads);
}
void layernorm_forward_f64(const double* x, const double* g, const double* b, double* y, double* mean,
                           double* rstd, std::int64_t S, std::int64_t M, double eps, int threads) {
    forward(x, g, b, y, mean, rstd, S, M, eps, threads);
}
void layernorm_backward_f32(const float* dy, const float* x, const float* mean, const float* rstd, const float* g,
                            float* dx, float* dg, float* db, std::int64_t S, std::int64_t M, int threads) {
    backward(dy, x, mean, rstd, g, dx, dg, db, S, M, threads);
}
void layernorm_backward_f64(const double* dy, const double* x, const double* mean, const double* rstd,
                            const double* g, double* dx, double* dg, double* db, std::int64_t S, std::int64_t M, int threads) {
    backward(dy, x, mean, rstd, g, dx, dg, db, S, M, threads);
}
}
