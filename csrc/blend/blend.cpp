// Exact-ratio blended sampler: the C++ core. See blend.h for the construction.
#include "blend.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

namespace regmix {
namespace blend {
namespace {

__extension__ typedef unsigned __int128 u128;
using std::int32_t;
using std::int64_t;
using std::uint64_t;

int bit_length(uint64_t x) {
  int n = 0;
  while (x != 0) {
    ++n;
    x >>= 1;
  }
  return n;
}

std::string fmt(double x) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", x);
  return std::string(buf);
}

// The deadline slot ceil(d) of a job whose deadline d, relative to its block's start, is
// (q + r / W) / 2^F exactly (q, r: the fixed-point floor and remainder the walk keeps).
inline uint64_t deadline_slot(uint64_t q, uint64_t r, int F) {
  const uint64_t frac = q & ((uint64_t{1} << F) - 1);
  return (q >> F) + static_cast<uint64_t>((frac | r) != 0);
}

// The first job a domain still owes in a block: its deadline relative to the block start,
// ((c+1) T - n0 W) 2^F / W > 0 as quotient q and remainder r, and its release, the first slot u
// with c < w (n0 + u), i.e. floor(c T / W - n0) + 1, at least 1. c: the domain's count at n0.
struct FirstJob {
  uint64_t q;
  uint64_t r;
  uint64_t release;
};

inline FirstJob first_job(uint64_t T, int F, uint64_t w, int64_t c, u128 n0) {
  const u128 n0w = n0 * w;
  const u128 x = (static_cast<u128>(c + 1) * T - n0w) << F;
  const u128 ct = static_cast<u128>(c) * T;
  return {static_cast<uint64_t>(x / w), static_cast<uint64_t>(x % w),
          ct > n0w ? static_cast<uint64_t>((ct - n0w) / w) + 1 : 1};
}

// Bits set in x (portable: no popcnt instruction is assumed).
inline int popcount64(uint64_t x) {
  x = x - ((x >> 1) & 0x5555555555555555ULL);
  x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
  x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
  return static_cast<int>((x * 0x0101010101010101ULL) >> 56);
}

// Binary min-heap of 64-bit composite keys (value in the high bits, domain in the low bits).
void sift_down(std::vector<uint64_t>& h, std::size_t i) {
  const std::size_t n = h.size();
  const uint64_t v = h[i];
  for (;;) {
    std::size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && h[c + 1] < h[c]) ++c;
    if (h[c] >= v) break;
    h[i] = h[c];
    i = c;
  }
  h[i] = v;
}

// Places key v into the heap a, starting from the hole at index i and moving it up.
inline void sift_up(uint64_t* a, std::size_t i, uint64_t v) {
  while (i > 0) {
    const std::size_t p = (i - 1) / 2;
    if (a[p] <= v) break;
    a[i] = a[p];
    i = p;
  }
  a[i] = v;
}

void heap_push(std::vector<uint64_t>& h, uint64_t v) {
  h.push_back(v);
  sift_up(h.data(), h.size() - 1, v);
}

void heap_pop(std::vector<uint64_t>& h) {
  h[0] = h.back();
  h.pop_back();
  if (!h.empty()) sift_down(h, 0);
}

void heapify(std::vector<uint64_t>& h) {
  for (std::size_t i = h.size() / 2; i-- > 0;) sift_down(h, i);
}

// Sift-down in a heap of n keys followed by a sentinel (all ones) at h[n]: the choice of the
// smaller child needs no bounds check and compiles to a conditional move.
inline void sift_down_raw(uint64_t* a, std::size_t n, std::size_t i) {
  const uint64_t v = a[i];
  for (;;) {
    std::size_t c = 2 * i + 1;
    if (c >= n) break;
    c += static_cast<std::size_t>(a[c + 1] < a[c]);
    if (a[c] >= v) break;
    a[i] = a[c];
    i = c;
  }
  a[i] = v;
}

// Hamilton apportionment of n with reusable scratch space.
void hamilton(const Plan& plan, int64_t n, int64_t* counts, std::vector<uint64_t>& rem,
              std::vector<int64_t>& order) {
  const int64_t K = plan.num_domains;
  const uint64_t T = plan.total;
  rem.resize(static_cast<std::size_t>(K));
  int64_t assigned = 0;
  for (int64_t k = 0; k < K; ++k) {
    const u128 prod = static_cast<u128>(plan.weights[k]) * static_cast<uint64_t>(n);
    const u128 q = prod / T;
    counts[k] = static_cast<int64_t>(q);
    rem[k] = static_cast<uint64_t>(prod - q * T);
    assigned += counts[k];
  }
  const int64_t left = n - assigned;  // sum(rem) / T: at most the number of rem > 0
  if (left <= 0) return;
  order.resize(static_cast<std::size_t>(K));
  for (int64_t k = 0; k < K; ++k) order[k] = k;
  auto before = [&rem](int64_t a, int64_t b) {
    return rem[a] != rem[b] ? rem[a] > rem[b] : a < b;
  };
  std::nth_element(order.begin(), order.begin() + (left - 1), order.end(), before);
  for (int64_t i = 0; i < left; ++i) ++counts[order[i]];
}

}  // namespace

namespace {

// Validates the weights (count, finite, >= 0, not all zero); returns the largest.
double check_weights(const double* weights, int64_t num_weights) {
  if (num_weights < 1) {
    throw std::invalid_argument(
        "weights is empty: give one weight per dataset (at least one dataset)");
  }
  if (num_weights > kMaxDomains) {
    throw std::invalid_argument("got " + std::to_string(num_weights) +
                                " weights; at most " + std::to_string(kMaxDomains) +
                                " datasets can be blended");
  }
  double largest = 0.0;
  for (int64_t k = 0; k < num_weights; ++k) {
    const double x = weights[k];
    if (std::isnan(x) || std::isinf(x)) {
      throw std::invalid_argument("weights[" + std::to_string(k) + "] is " + fmt(x) +
                                  "; every weight must be a finite number >= 0");
    }
    if (x < 0.0) {
      throw std::invalid_argument("weights[" + std::to_string(k) + "] is " + fmt(x) +
                                  "; weights must be >= 0 (use 0 to leave a dataset out)");
    }
    largest = std::max(largest, x);
  }
  if (largest == 0.0) {
    throw std::invalid_argument("all " + std::to_string(num_weights) +
                                " weights are 0; give at least one dataset a positive weight");
  }
  return largest;
}

}  // namespace

Plan make_plan(const double* weights, int64_t num_weights) {
  const double largest = check_weights(weights, num_weights);
  Plan plan;
  plan.num_domains = num_weights;
  plan.index_bits = bit_length(static_cast<uint64_t>(num_weights - 1));
  const int precision = 61 - plan.index_bits;  // every W_k <= 2^precision, so T < 2^61
  int exponent = 0;
  std::frexp(largest, &exponent);
  const int shift = precision - exponent;
  plan.weights.resize(static_cast<std::size_t>(num_weights));
  uint64_t smallest = 0;
  int64_t num_positive = 0;
  for (int64_t k = 0; k < num_weights; ++k) {
    const double scaled = std::nearbyint(std::ldexp(weights[k], shift));
    const uint64_t w = static_cast<uint64_t>(scaled);
    if (weights[k] > 0.0 && w == 0) {
      throw std::invalid_argument(
          "weights[" + std::to_string(k) + "] = " + fmt(weights[k]) +
          " is below 2^-" + std::to_string(precision) + " of the largest weight (" +
          fmt(largest) + "): at that ratio the dataset would never be sampled; raise it or "
          "set it to exactly 0");
    }
    plan.weights[k] = w;
    plan.total += w;
    if (w > 0) {
      ++num_positive;
      smallest = (smallest == 0) ? w : std::min(smallest, w);
    }
  }
  const uint64_t T = plan.total;
  const uint64_t min_block = (T + smallest - 1) / smallest;  // W_min * B >= T
  uint64_t block = std::max<uint64_t>(min_block, kMinBlockSize);
  block = std::max<uint64_t>(block, static_cast<uint64_t>(kBlockSamplesPerDomain * num_positive));
  plan.frac_bits = 62 - bit_length(block) - plan.index_bits;
  if (plan.frac_bits < 0) {
    throw std::invalid_argument(
        "the smallest positive weight is " + fmt(static_cast<double>(smallest) / T) +
        " of the total with " + std::to_string(num_weights) +
        " datasets: the sampler's 64-bit keys need (1 / smallest ratio) * (number of datasets) "
        "below about 2^61; raise the smallest weights or set them to 0");
  }
  plan.block_size = static_cast<int64_t>(block);
  plan.step_int.assign(static_cast<std::size_t>(num_weights), 0);
  plan.step_frac.assign(static_cast<std::size_t>(num_weights), 0);
  for (int64_t k = 0; k < num_weights; ++k) {
    const uint64_t w = plan.weights[k];
    if (w == 0) continue;
    const u128 x = static_cast<u128>(T) << plan.frac_bits;
    plan.step_int[k] = static_cast<uint64_t>(x / w);
    plan.step_frac[k] = static_cast<uint64_t>(x % w);
  }
  return plan;
}

void boundary_counts(const Plan& plan, int64_t n, int64_t* counts) {
  std::vector<uint64_t> rem;
  std::vector<int64_t> order;
  hamilton(plan, n, counts, rem, order);
}

void BlockWalk::begin(const Plan& plan, int64_t block, const std::vector<int64_t>& start,
                      const std::vector<int64_t>& end) {
  const int64_t K = plan.num_domains;
  const uint64_t T = plan.total;
  const int F = plan.frac_bits;
  const int kb = plan.index_bits;
  const u128 n0 = static_cast<u128>(block) * static_cast<uint64_t>(plan.block_size);
  count_ = start;
  end_ = end;
  q_.assign(static_cast<std::size_t>(K), 0);
  r_.assign(static_cast<std::size_t>(K), 0);
  ready_.assign(static_cast<std::size_t>(K) + 1, ~uint64_t{0});
  num_ready_ = 0;
  top_taken_ = false;
  wheel_head_.assign(static_cast<std::size_t>(kWheelSize), -1);
  wheel_next_.assign(static_cast<std::size_t>(K), -1);
  far_.clear();
  offset_ = 0;
  for (int64_t k = 0; k < K; ++k) {
    const uint64_t w = plan.weights[k];
    if (w == 0 || start[k] >= end[k]) continue;
    const FirstJob job = first_job(T, F, w, start[k], n0);
    q_[k] = job.q;
    r_[k] = job.r;
    const uint64_t rel = job.release;
    const uint64_t kk = static_cast<uint64_t>(k);
    if (rel <= 1) {
      ready_[num_ready_++] = (deadline_slot(q_[k], r_[k], F) << kb) | kk;
    } else if (rel < static_cast<uint64_t>(kWheelSize)) {
      wheel_next_[k] = wheel_head_[rel];
      wheel_head_[rel] = static_cast<int32_t>(k);
    } else {
      far_.push_back((rel << kb) | kk);
    }
  }
  for (std::size_t i = num_ready_ / 2; i-- > 0;) sift_down_raw(ready_.data(), num_ready_, i);
  heapify(far_);
}

void BlockWalk::release_due(const Plan& plan, uint64_t u) {
  const int F = plan.frac_bits;
  const int kb = plan.index_bits;
  const uint64_t mask = (uint64_t{1} << kb) - 1;
  const std::size_t slot = static_cast<std::size_t>(u & (static_cast<uint64_t>(kWheelSize) - 1));
  for (int32_t k = wheel_head_[slot]; k >= 0;) {
    const int32_t after = wheel_next_[k];
    add_ready((deadline_slot(q_[k], r_[k], F) << kb) | static_cast<uint64_t>(k));
    k = after;
  }
  wheel_head_[slot] = -1;
  while (!far_.empty() && (far_[0] >> kb) <= u) {
    const uint64_t k = far_[0] & mask;
    heap_pop(far_);
    add_ready((deadline_slot(q_[k], r_[k], F) << kb) | k);
  }
  if (top_taken_) {  // nothing replaced the emitted top: remove it
    uint64_t* const heap = ready_.data();
    heap[0] = heap[--num_ready_];
    heap[num_ready_] = ~uint64_t{0};
    top_taken_ = false;
    sift_down_raw(heap, num_ready_, 0);
  }
}

void BlockWalk::add_ready(uint64_t key) {
  // Into the emitted top's place when that one is free, else at the end.
  if (top_taken_) {
    ready_[0] = key;
    top_taken_ = false;
    sift_down_raw(ready_.data(), num_ready_, 0);
    return;
  }
  sift_up(ready_.data(), num_ready_++, key);
}

void BlockWalk::schedule_next(const Plan& plan, std::size_t k, uint64_t u) {
  const int F = plan.frac_bits;
  const int kb = plan.index_bits;
  const uint64_t wheel_mask = static_cast<uint64_t>(kWheelSize) - 1;
  // The next job of k is released one slot after the floor of this job's deadline.
  const uint64_t rel = (q_[k] >> F) + 1;
  const uint64_t w = plan.weights[k];
  const uint64_t rk = r_[k] + plan.step_frac[k];
  const uint64_t carry = static_cast<uint64_t>(rk >= w);
  r_[k] = rk - carry * w;
  q_[k] += plan.step_int[k] + carry;
  if (rel <= u + 1) {  // released already: replaces the top it was emitted from
    ready_[0] = (deadline_slot(q_[k], r_[k], F) << kb) | k;
    sift_down_raw(ready_.data(), num_ready_, 0);
    return;
  }
  top_taken_ = true;
  if (rel - u <= wheel_mask) {
    const std::size_t at = static_cast<std::size_t>(rel & wheel_mask);
    wheel_next_[k] = wheel_head_[at];
    wheel_head_[at] = static_cast<int32_t>(k);
  } else {
    heap_push(far_, (rel << kb) | k);
  }
}

void BlockWalk::run(const Plan& plan, int64_t num, int32_t* dataset, int64_t* sample) {
  const uint64_t mask = (uint64_t{1} << plan.index_bits) - 1;
  uint64_t u = static_cast<uint64_t>(offset_);
  for (int64_t i = 0; i < num; ++i) {
    ++u;
    release_due(plan, u);
    if (num_ready_ == 0) {
      offset_ = static_cast<int64_t>(u) - 1;
      throw std::logic_error("blend sampler: no dataset can take sample " +
                             std::to_string(offset_) + " of its block (internal error)");
    }
    const std::size_t k = static_cast<std::size_t>(ready_[0] & mask);
    dataset[i] = static_cast<int32_t>(k);
    sample[i] = count_[k];
    offset_ = static_cast<int64_t>(u);
    if (++count_[k] >= end_[k]) {
      top_taken_ = true;  // k is done in this block: its key leaves at the next slot
      continue;
    }
    schedule_next(plan, k, u);
  }
}

void counts_after(const Plan& plan, int64_t n, int64_t* counts) {
  const int64_t K = plan.num_domains;
  const int64_t B = plan.block_size;
  const int64_t b = n / B;
  std::vector<int64_t> start(static_cast<std::size_t>(K)), end(static_cast<std::size_t>(K));
  boundary_counts(plan, b * B, start.data());
  const int64_t rest = n - b * B;
  if (rest > 0) {
    boundary_counts(plan, (b + 1) * B, end.data());
    BlockWalk walk;
    walk.begin(plan, b, start, end);
    std::vector<int32_t> d(256);
    std::vector<int64_t> s(256);
    for (int64_t done = 0; done < rest;) {
      const int64_t chunk = std::min<int64_t>(256, rest - done);
      walk.run(plan, chunk, d.data(), s.data());
      done += chunk;
    }
    start = walk.counts();
  }
  std::copy(start.begin(), start.end(), counts);
}

namespace {

// Deadline slots a chunk of the sorted job stream covers at least (see BlockFiller): its jobs
// (16 bytes each, twice) stay in the core's caches.
constexpr uint64_t kChunkSlots = 4096;
// A chunk also covers at least this many slots per domain with jobs left (amortises the
// per-domain work of each chunk).
constexpr uint64_t kChunkSlotsPerDomain = 16;
// Up to this many domains with jobs left, a chunk is sorted by merging the domains' runs
// (log2 of it passes) instead of a counting sort over the chunk's slots.
constexpr std::size_t kMergeDomains = 2;

// One job of the sorted stream: its key (D << index_bits | k) and its release slot.
struct Job {
  uint64_t key;
  uint64_t rel;
};

// Fills a block with the same samples as BlockWalk, job by job instead of slot by slot.
//
// Job c -> c+1 of domain k has a release slot R and a deadline slot D; its key is
// (D << index_bits | k). EDF on unit jobs gives each job, in key order, the earliest slot at
// or after R that no job of smaller key took (induction on the key order: at that slot EDF
// has no released job of smaller key left, and the job itself is released). So:
//   1. The jobs of a domain come in key order by themselves: a stable counting sort by D of
//      the jobs whose D falls in a chunk of deadline slots, domain by domain, yields the jobs
//      in key order (chunk after chunk: memory O(K + chunk), whatever the block size).
//   2. Each job takes the first free slot >= R from a 64-slot bitmap held in a register that
//      starts at the first free slot g (slots further on: a circular bitmap, then a sorted
//      list); g advances by the bitmap's trailing ones.
// Both passes are sequential with rarely-taken branches, where a priority queue puts a load,
// a compare and a store on the critical path of every sample.
class BlockFiller {
 public:
  // Writes the first `len` samples of block `block` (boundary counts `start` -> `end`); after
  // a full block, counts() must equal `end`.
  template <typename IndexT>
  void fill(const Plan& plan, int64_t block, const std::vector<int64_t>& start,
            const std::vector<int64_t>& end, int64_t len, IndexT* dataset, int64_t* sample) {
    begin_block(plan, block, start, end);
    place_jobs(plan, block, static_cast<uint64_t>(len), dataset, sample);
  }
  const std::vector<int64_t>& counts() const { return count_; }
  // Every job of the block was emitted (true after a full block).
  bool exhausted() const { return active_.empty() && pos_ == size_ && num_far_ == 0; }

 private:
  // Step 1: the first job each domain owes in the block, and buffers sized for its chunks.
  void begin_block(const Plan& plan, int64_t block, const std::vector<int64_t>& start,
                   const std::vector<int64_t>& end);
  // Step 2: the jobs with deadline slot in [from, from + span) in key order into jobs_;
  // returns their number.
  uint64_t next_chunk(const Plan& plan);
  // Step 2a: generates those jobs domain by domain into tmp_ (one sorted run per domain, ends
  // in run_ends_) and, with kCount, counts them per slot; next_from: where the next chunk starts.
  template <bool kCount>
  uint64_t generate_jobs(const Plan& plan, uint64_t lim, uint64_t& next_from);
  // Step 2b: stable counting sort of tmp_[0..n) by deadline slot into jobs_.
  void sort_jobs(int index_bits, uint64_t n);
  // Step 2b for few domains: pairwise merges of the per-domain runs of tmp_ into jobs_.
  void merge_runs(uint64_t n);
  // Step 3: each job, in key order, takes the first free slot at or after its release.
  template <typename IndexT>
  void place_jobs(const Plan& plan, int64_t block, uint64_t last, IndexT* dataset,
                  int64_t* sample);
  // A job released after g: the first free slot at or after `rel` (window or far sets).
  uint64_t place_later(uint64_t g, uint64_t& window, uint64_t rel);
  // Slot g was just taken: moves g to the next free slot, pulling far slots into the window.
  void advance(uint64_t& g, uint64_t& window);
  // advance() when the whole window is taken.
  void advance_full(uint64_t& g, uint64_t& window);
  // Takes the first free slot at or after `from` (beyond the window [g, g + 64)).
  uint64_t place_far(uint64_t g, uint64_t from);
  // Removes and returns the far bits of slots [from, from + count), 1 <= count <= 64.
  uint64_t take_far(uint64_t from, int count);
  // Moves the overflow slots below `horizon` into the far bitmap.
  void pull_overflow(uint64_t horizon);
  [[noreturn]] void stuck(uint64_t g, int64_t block) const;

  static constexpr uint64_t kHorizon = uint64_t{1} << 16;  // slots of the far bitmap
  static constexpr std::size_t kHorizonWords = kHorizon / 64;

  // Per domain: fixed-point deadline (q_, r_), count and release of its next job to sort.
  std::vector<uint64_t> q_, r_, rel_next_;
  std::vector<int64_t> next_, end_, count_;
  std::vector<uint64_t> deadline_next_;  // deadline slot of that job
  std::vector<int32_t> active_;          // domains with jobs left to sort, ascending
  std::vector<uint32_t> hist_;
  std::vector<Job> tmp_, jobs_;
  std::vector<uint64_t> run_ends_;  // end of each domain's run of jobs in tmp_
  std::vector<uint64_t> taken_ = std::vector<uint64_t>(kHorizonWords);  // far taken slots
  std::vector<uint64_t> overflow_;  // taken slots beyond the far bitmap's horizon, ascending
  uint64_t num_far_ = 0;            // bits set in taken_ plus entries of overflow_
  uint64_t from_ = 0, span_ = 0, pos_ = 0, size_ = 0;
};

void BlockFiller::begin_block(const Plan& plan, int64_t block, const std::vector<int64_t>& start,
                              const std::vector<int64_t>& end) {
  const int64_t K = plan.num_domains;
  const std::size_t Ks = static_cast<std::size_t>(K);
  const int F = plan.frac_bits;
  const u128 n0 = static_cast<u128>(block) * static_cast<uint64_t>(plan.block_size);
  q_.resize(Ks);
  r_.resize(Ks);
  rel_next_.resize(Ks);
  deadline_next_.resize(Ks);
  next_ = start;
  end_ = end;
  count_ = start;
  active_.clear();
  for (int64_t k = 0; k < K; ++k) {
    const uint64_t w = plan.weights[k];
    if (w == 0 || start[k] >= end[k]) continue;
    const FirstJob job = first_job(plan.total, F, w, start[k], n0);
    q_[k] = job.q;
    r_[k] = job.r;
    deadline_next_[k] = deadline_slot(q_[k], r_[k], F);
    rel_next_[k] = job.release;
    active_.push_back(static_cast<int32_t>(k));
  }
  // Most deadlines of the block lie in [1, B]: a chunk need not cover more at once.
  const uint64_t B = static_cast<uint64_t>(plan.block_size);
  span_ = std::max<uint64_t>(std::min<uint64_t>(kChunkSlots, B + 1),
                             kChunkSlotsPerDomain * static_cast<uint64_t>(active_.size()));
  // A chunk holds at most span * sum(w) + (one per domain) jobs.
  const std::size_t cap = static_cast<std::size_t>(span_) + active_.size() + 1;
  hist_.resize(static_cast<std::size_t>(span_));
  tmp_.resize(cap);
  jobs_.resize(cap);
  from_ = 0;
  pos_ = 0;
  size_ = 0;
  if (num_far_ != 0) {  // an earlier fill stopped early: clear its far slots
    std::fill(taken_.begin(), taken_.end(), 0);
    overflow_.clear();
    num_far_ = 0;
  }
}

template <bool kCount>
uint64_t BlockFiller::generate_jobs(const Plan& plan, uint64_t lim, uint64_t& next_from) {
  const int F = plan.frac_bits;
  const int kb = plan.index_bits;
  uint64_t n = 0;
  uint64_t first_left = ~uint64_t{0};  // smallest deadline slot not generated yet
  uint32_t* const hist = hist_.data();
  Job* const tmp = tmp_.data();
  const uint64_t from = from_;
  std::size_t keep = 0;
  run_ends_.clear();
  for (const int32_t k32 : active_) {
    const std::size_t k = static_cast<std::size_t>(k32);
    const uint64_t w = plan.weights[k], si = plan.step_int[k], sf = plan.step_frac[k];
    uint64_t q = q_[k], r = r_[k], rel = rel_next_[k], d = deadline_next_[k];
    int64_t c = next_[k];
    const int64_t e = end_[k];
    while (d < lim) {
      tmp[n++] = Job{(d << kb) | static_cast<uint64_t>(k), rel};
      if (kCount) ++hist[d - from];
      rel = (q >> F) + 1;  // the next job is released one slot after this deadline's floor
      const uint64_t rk = r + sf;
      const uint64_t carry = static_cast<uint64_t>(rk >= w);
      r = rk - carry * w;
      q += si + carry;
      d = deadline_slot(q, r, F);
      if (++c == e) break;
    }
    q_[k] = q;
    r_[k] = r;
    rel_next_[k] = rel;
    deadline_next_[k] = d;
    next_[k] = c;
    run_ends_.push_back(n);
    if (c < e) {
      active_[keep++] = k32;
      first_left = std::min(first_left, d);
    }
  }
  active_.resize(keep);
  // The next chunk starts at the next deadline not generated (skipping empty stretches).
  next_from = std::max(lim, first_left);
  return n;
}

void BlockFiller::sort_jobs(int index_bits, uint64_t n) {
  // Stable: within a deadline slot the domains stay in index order, the key order.
  uint32_t* const hist = hist_.data();
  uint32_t sum = 0;
  for (uint64_t b = 0; b < span_; ++b) {
    const uint32_t h = hist[b];
    hist[b] = sum;
    sum += h;
  }
  const Job* const tmp = tmp_.data();
  Job* const jobs = jobs_.data();
  const uint64_t from = from_;
  for (uint64_t i = 0; i < n; ++i) jobs[hist[(tmp[i].key >> index_bits) - from]++] = tmp[i];
}

// Merges the sorted runs [a, ae) and [b, be) into out; keys are distinct (they hold the domain).
inline void merge_two(const Job* a, const Job* ae, const Job* b, const Job* be, Job* out) {
  while (a != ae && b != be) {
    const bool take_b = b->key < a->key;
    *out++ = take_b ? *b : *a;
    b += take_b;
    a += !take_b;
  }
  out = std::copy(a, ae, out);
  std::copy(b, be, out);
}

void BlockFiller::merge_runs(uint64_t n) {
  Job* src = tmp_.data();
  Job* dst = jobs_.data();
  while (run_ends_.size() > 1) {
    std::size_t out = 0;
    uint64_t begin = 0;
    for (std::size_t i = 0; i < run_ends_.size(); i += 2) {
      const uint64_t mid = run_ends_[i];
      const uint64_t stop = i + 1 < run_ends_.size() ? run_ends_[i + 1] : mid;
      merge_two(src + begin, src + mid, src + mid, src + stop, dst + begin);
      run_ends_[out++] = stop;
      begin = stop;
    }
    run_ends_.resize(out);
    std::swap(src, dst);
  }
  if (src != jobs_.data()) std::copy(src, src + n, jobs_.data());
}

uint64_t BlockFiller::next_chunk(const Plan& plan) {
  uint64_t next_from = 0;
  uint64_t n = 0;
  if (active_.size() <= kMergeDomains) {
    n = generate_jobs<false>(plan, from_ + span_, next_from);
    merge_runs(n);
  } else {
    std::fill(hist_.begin(), hist_.end(), 0);
    n = generate_jobs<true>(plan, from_ + span_, next_from);
    sort_jobs(plan.index_bits, n);
  }
  from_ = next_from;
  return n;
}

// Job-major form of EDF: in key order, each job takes the earliest free slot at or after its
// release (by induction on the key order, EDF gives every job exactly that slot). Slots
// [1, g) are all taken; `window` has bit i set when slot g + i is taken (bit 0 never is between
// jobs); slots taken further on are bits of the circular bitmap taken_ (kHorizon slots from g)
// and, beyond that, entries of overflow_; they enter the window as g advances.
template <typename IndexT>
void BlockFiller::place_jobs(const Plan& plan, int64_t block, uint64_t last, IndexT* dataset,
                             int64_t* sample) {
  const uint64_t mask = (uint64_t{1} << plan.index_bits) - 1;
  int64_t* const count = count_.data();
  uint64_t g = 1, window = 0, f = 0, n = 0;
  const Job* jobs = jobs_.data();
  while (g <= last) {
    if (f == n) {
      if (active_.empty()) stuck(g, block);
      n = next_chunk(plan);
      f = 0;
      jobs = jobs_.data();
      continue;
    }
    const Job job = jobs[f++];
    uint64_t slot = g;
    if (job.rel <= g) {  // released: it takes the first free slot
      window |= 1;
    } else {
      slot = place_later(g, window, job.rel);
    }
    const uint64_t k = job.key & mask;
    if (slot <= last) {
      dataset[slot - 1] = static_cast<IndexT>(k);
      sample[slot - 1] = count[k];
    }
    ++count[k];
    if (window & 1) advance(g, window);
  }
  pos_ = f;
  size_ = n;
}

inline uint64_t BlockFiller::place_later(uint64_t g, uint64_t& window, uint64_t rel) {
  const uint64_t off = rel - g;
  const uint64_t free_bits = off < 64 ? ~window & (~uint64_t{0} << off) : 0;
  if (free_bits != 0) {
    const int s = __builtin_ctzll(free_bits);
    window |= uint64_t{1} << s;
    return g + static_cast<uint64_t>(s);
  }
  return place_far(g, g + std::max<uint64_t>(off, 64));
}

inline void BlockFiller::advance(uint64_t& g, uint64_t& window) {
  if (~window == 0) {
    advance_full(g, window);
    return;
  }
  const int t = __builtin_ctzll(~window);
  const uint64_t from = g + 64;
  g += static_cast<uint64_t>(t);
  window >>= t;
  if (num_far_ != 0) window |= take_far(from, t) << (64 - t);
}

void BlockFiller::advance_full(uint64_t& g, uint64_t& window) {
  g += 64;
  window = num_far_ != 0 ? take_far(g, 64) : 0;
  while (window & 1) {  // (the slots after the full window may be taken too)
    const int t = ~window == 0 ? 64 : __builtin_ctzll(~window);
    const uint64_t from = g + 64;
    g += static_cast<uint64_t>(t);
    window = t == 64 ? 0 : window >> t;
    if (num_far_ != 0) {
      window |= t == 64 ? take_far(from, 64) : take_far(from, t) << (64 - t);
    }
  }
}

void BlockFiller::stuck(uint64_t g, int64_t block) const {
  throw std::logic_error("blend sampler: no dataset can take sample " + std::to_string(g - 1) +
                         " of block " + std::to_string(block) + " (internal error)");
}

uint64_t BlockFiller::place_far(uint64_t g, uint64_t from) {
  // The first free slot >= from, beyond the window [g, g + 64).
  const uint64_t horizon = g + kHorizon;
  uint64_t slot = from;
  while (slot < horizon) {
    const std::size_t wi = static_cast<std::size_t>(slot >> 6) & (kHorizonWords - 1);
    const uint64_t free_bits = ~taken_[wi] & (~uint64_t{0} << (slot & 63));
    if (free_bits != 0) {
      const uint64_t at = (slot & ~uint64_t{63}) + static_cast<uint64_t>(__builtin_ctzll(free_bits));
      if (at >= horizon) break;
      taken_[wi] |= uint64_t{1} << (at & 63);
      ++num_far_;
      return at;
    }
    slot = (slot & ~uint64_t{63}) + 64;
  }
  slot = std::max(slot, horizon);
  auto it = std::lower_bound(overflow_.begin(), overflow_.end(), slot);
  while (it != overflow_.end() && *it == slot) {
    ++slot;
    ++it;
  }
  overflow_.insert(it, slot);
  ++num_far_;
  return slot;
}

uint64_t BlockFiller::take_far(uint64_t from, int count) {
  // Bits of the taken slots [from, from + count) (bit i: slot from + i), removed from the far
  // bitmap (they lie in at most two of its words); the horizon then moves on by `count`, so
  // overflow slots it now covers enter the bitmap.
  const std::size_t wi = static_cast<std::size_t>(from >> 6) & (kHorizonWords - 1);
  const int bo = static_cast<int>(from & 63);
  const uint64_t sel = count == 64 ? ~uint64_t{0} : (uint64_t{1} << count) - 1;
  uint64_t out;
  if (bo + count <= 64) {
    const uint64_t m = sel << bo;
    out = (taken_[wi] & m) >> bo;
    taken_[wi] &= ~m;
  } else {
    const std::size_t wj = (wi + 1) & (kHorizonWords - 1);
    const uint64_t lo_mask = ~uint64_t{0} << bo;
    const uint64_t hi_mask = (uint64_t{1} << (bo + count - 64)) - 1;
    out = ((taken_[wi] & lo_mask) >> bo) | ((taken_[wj] & hi_mask) << (64 - bo));
    taken_[wi] &= ~lo_mask;
    taken_[wj] &= ~hi_mask;
  }
  if (out != 0) num_far_ -= static_cast<uint64_t>(popcount64(out));
  if (!overflow_.empty()) pull_overflow(from + static_cast<uint64_t>(count) - 64 + kHorizon);
  return out;
}

void BlockFiller::pull_overflow(uint64_t horizon) {
  std::size_t moved = 0;
  while (moved < overflow_.size() && overflow_[moved] < horizon) {
    const uint64_t slot = overflow_[moved++];
    taken_[static_cast<std::size_t>(slot >> 6) & (kHorizonWords - 1)] |= uint64_t{1} << (slot & 63);
  }
  overflow_.erase(overflow_.begin(), overflow_.begin() + static_cast<std::ptrdiff_t>(moved));
}

// Blocks [first, last) of the stream, one after the other, each checked against its end counts.
template <typename IndexT>
void fill_blocks(const Plan& plan, int64_t num_samples, int64_t first, int64_t last,
                 IndexT* dataset_index, int64_t* dataset_sample_index) {
  const int64_t B = plan.block_size;
  const std::size_t K = static_cast<std::size_t>(plan.num_domains);
  std::vector<int64_t> start(K), end(K);
  std::vector<uint64_t> rem;
  std::vector<int64_t> order;
  BlockFiller filler;
  hamilton(plan, first * B, start.data(), rem, order);
  for (int64_t b = first; b < last; ++b) {
    hamilton(plan, (b + 1) * B, end.data(), rem, order);
    const int64_t base = b * B;
    const int64_t len = std::min(B, num_samples - base);
    filler.fill(plan, b, start, end, len, dataset_index + base, dataset_sample_index + base);
    if (len == B && (filler.counts() != end || !filler.exhausted())) {
      throw std::logic_error("blend sampler: block " + std::to_string(b) +
                             " did not end on its boundary counts (internal error)");
    }
    std::swap(start, end);
  }
}

}  // namespace


template <typename IndexT>
void build_indices(const Plan& plan, int64_t num_samples, IndexT* dataset_index,
                   int64_t* dataset_sample_index, int num_threads) {
  if (num_samples <= 0) return;
  const int64_t B = plan.block_size;
  const int64_t num_blocks = (num_samples + B - 1) / B;
  int64_t threads = num_threads > 0 ? num_threads
                                    : static_cast<int64_t>(std::thread::hardware_concurrency());
  threads = std::max<int64_t>(1, std::min<int64_t>(threads, num_blocks));
  if (num_samples < (int64_t{1} << 16)) threads = 1;
  auto work = [&](int64_t first, int64_t last) {
    fill_blocks(plan, num_samples, first, last, dataset_index, dataset_sample_index);
  };
  if (threads == 1) {
    work(0, num_blocks);
    return;
  }
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(threads));
  for (int64_t t = 0; t < threads; ++t) {
    const int64_t first = num_blocks * t / threads;
    const int64_t last = num_blocks * (t + 1) / threads;
    pool.emplace_back([&, t, first, last] {
      try {
        work(first, last);
      } catch (...) {
        errors[static_cast<std::size_t>(t)] = std::current_exception();
      }
    });
  }
  for (auto& th : pool) th.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

template void build_indices<std::uint8_t>(const Plan&, int64_t, std::uint8_t*, int64_t*, int);
template void build_indices<std::int16_t>(const Plan&, int64_t, std::int16_t*, int64_t*, int);
template void build_indices<std::int32_t>(const Plan&, int64_t, std::int32_t*, int64_t*, int);

template <typename IndexT>
double max_prefix_deviation(const IndexT* dataset_index, int64_t num_samples,
                            const double* weights, int64_t num_weights) {
  double sum = 0.0;
  for (int64_t k = 0; k < num_weights; ++k) sum += weights[k];
  std::vector<double> w(static_cast<std::size_t>(num_weights));
  for (int64_t k = 0; k < num_weights; ++k) w[k] = weights[k] / sum;
  std::vector<int64_t> count(static_cast<std::size_t>(num_weights), 0);
  double worst = 0.0;
  for (int64_t p = 0; p < num_samples; ++p) {
    const int64_t k = static_cast<int64_t>(dataset_index[p]);
    if (k < 0 || k >= num_weights) return -1.0;
    // Just before a sample of k its deficit peaks; just after it, its surplus does.
    const double before = w[k] * static_cast<double>(p) - static_cast<double>(count[k]);
    ++count[k];
    const double after = static_cast<double>(count[k]) - w[k] * static_cast<double>(p + 1);
    worst = std::max(worst, std::max(before, after));
  }
  for (int64_t k = 0; k < num_weights; ++k) {
    worst = std::max(worst, std::fabs(w[k] * static_cast<double>(num_samples) -
                                      static_cast<double>(count[k])));
  }
  return worst;
}

template double max_prefix_deviation<std::uint8_t>(const std::uint8_t*, int64_t, const double*,
                                                   int64_t);
template double max_prefix_deviation<std::int16_t>(const std::int16_t*, int64_t, const double*,
                                                   int64_t);
template double max_prefix_deviation<std::int32_t>(const std::int32_t*, int64_t, const double*,
                                                   int64_t);
template double max_prefix_deviation<std::int64_t>(const std::int64_t*, int64_t, const double*,
                                                   int64_t);

Cursor::Cursor(Plan plan)
    : plan_(std::move(plan)),
      start_(static_cast<std::size_t>(plan_.num_domains)),
      end_(static_cast<std::size_t>(plan_.num_domains)) {}

void Cursor::lookup(int64_t index, int32_t* dataset, int64_t* sample) {
  const int64_t B = plan_.block_size;
  const int64_t b = index / B;
  const int64_t offset = index % B;
  if (b != block_ || offset < walk_.offset()) {
    if (b == block_) {
      walk_.begin(plan_, b, start_, end_);  // a step back inside the block: walk again
    } else {
      if (b == block_ + 1 && block_ >= 0) {
        std::swap(start_, end_);  // the previous block's end is this block's start
      } else {
        boundary_counts(plan_, b * B, start_.data());
      }
      boundary_counts(plan_, (b + 1) * B, end_.data());
      walk_.begin(plan_, b, start_, end_);
      block_ = b;
    }
  }
  int32_t d[256];
  int64_t s[256];
  while (walk_.offset() < offset) {
    walk_.run(plan_, std::min<int64_t>(256, offset - walk_.offset()), d, s);
  }
  walk_.step(plan_, dataset, sample);
}

}  // namespace blend
}  // namespace regmix
