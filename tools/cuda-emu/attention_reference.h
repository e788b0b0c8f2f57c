// The float64 reference shared by the attention emulation tests (flash_test, flash_mma_test, decode_test): the scores
// of one query row t against keys 0..S-1 — dot(j)·scale + mask(j), −inf for a key the causal rule hides (key j is
// visible when j <= offset + t) — into sc, and their maximum (−inf for a row that sees no key).
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

template <typename Dot, typename Mask>
inline double attention_row_scores(std::vector<double>& sc, int S, bool causal, long long offset, int t, double scale, Dot dot, Mask mask)
{
    sc.assign(S, -INFINITY);
    double m = -INFINITY;
    for (int j = 0; j < S; j++)
    {
        bool vis = !causal || j <= offset + t;
        double s = dot(j) * scale + mask(j);
        sc[j] = vis ? s : -INFINITY;
        m = std::max(m, sc[j]);
    }
    return m;
}
