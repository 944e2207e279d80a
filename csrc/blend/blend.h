// Exact-ratio blended sampler: the C++ core (no Python headers).
//
// The sequence, in brief (docs/blending.md has the proof sketch):
//   * Weights are quantised to 64-bit integers W_k (scaled by a power of two, rounded to the
//     nearest integer); the exact ratios used are W_k / T with T = sum W_k < 2^61.
//   * The stream is cut into blocks of B samples, B >= T / min_k W_k (positive weights).
//     At every block boundary n = b*B the per-domain counts are the largest-remainder
//     (Hamilton) apportionment of n, ties broken by the lower index: a closed form, and
//     monotone from one boundary to the next because W_k * B >= T.
//   * Inside a block, earliest-deadline-first (EDF) goes from one boundary state to the next:
//     domain k may take slot t when c_k < w_k t (its release), its next job is due at the
//     first slot t with w_k t >= c_k + 1 (its deadline slot D). Every prefix then satisfies
//     floor(w_k n) <= c_k(n) <= ceil(w_k n), so |c_k(n) - w_k n| < 1.
//   * Jobs are ordered by the key (D << index_bits | k): integer deadline, ties to the lower
//     index. Deadlines are tracked exactly in fixed point (floor and remainder), so D is exact.
//   * For unit jobs, EDF gives each job, in key order, the earliest slot at or after its
//     release that no job of smaller key took. build_indices uses that form (a counting sort
//     of the jobs by D, then a bitmap of taken slots); BlockWalk (lazy lookups, counts_after)
//     walks slot by slot with a heap. Both give the same sequence.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace regmix {
namespace blend {

// Everything the sequence needs that depends on the weights only (not on the length).
struct Plan {
  std::vector<std::uint64_t> weights;  // quantised integer weights W_k (0 for zero weights)
  std::uint64_t total = 0;             // T = sum of W_k
  std::int64_t num_domains = 0;        // K
  std::int64_t block_size = 0;         // B
  int index_bits = 0;                  // bits that hold a domain index in a composite key
  int frac_bits = 0;                   // F: fractional bits of the fixed-point deadlines
  std::vector<std::uint64_t> step_int;   // floor(T * 2^F / W_k): deadline step per job
  std::vector<std::uint64_t> step_frac;  // (T * 2^F) mod W_k
};

// Smallest block the sampler uses, whatever the weights (amortises the boundary work).
constexpr std::int64_t kMinBlockSize = 4096;
// The block is also at least this many samples per domain with a positive weight.
constexpr std::int64_t kBlockSamplesPerDomain = 32;
// Largest number of domains (the widest dataset index is int32).
constexpr std::int64_t kMaxDomains = (std::int64_t{1} << 31) - 1;

// Validates the weights (finite, >= 0, not all zero, none so small that quantisation would
// drop it) and derives the plan. Throws std::invalid_argument with a user-facing message.
Plan make_plan(const double* weights, std::int64_t num_weights);

// The per-domain counts at a block boundary (or any n): Hamilton apportionment of n.
void boundary_counts(const Plan& plan, std::int64_t n, std::int64_t* counts);

// The per-domain counts after the first n samples of the sequence (a boundary apportionment
// plus a walk of at most one block).
void counts_after(const Plan& plan, std::int64_t n, std::int64_t* counts);

// Fills dataset_index[0..num_samples) and dataset_sample_index[0..num_samples).
// num_threads <= 0 picks the hardware concurrency. Blocks are independent, so threads split
// them; the result does not depend on the number of threads. IndexT: std::uint8_t,
// std::int16_t or std::int32_t (instantiated in blend.cpp); it must hold num_domains - 1.
template <typename IndexT>
void build_indices(const Plan& plan, std::int64_t num_samples, IndexT* dataset_index,
                   std::int64_t* dataset_sample_index, int num_threads);

// The largest |c_k(n) - w_k n| over all prefixes n = 0..N and domains k, where w are the
// given (float) weights normalised to sum 1. Index values must lie in [0, num_weights).
// Returns -1 if an index is out of range (the binding reports it).
template <typename IndexT>
double max_prefix_deviation(const IndexT* dataset_index, std::int64_t num_samples,
                            const double* weights, std::int64_t num_weights);

// The earliest-deadline-first walk through one block, slot by slot (state O(K)): the lazy
// form. build_indices produces the same samples from a sorted job stream instead.
class BlockWalk {
 public:
  // Starts block `block` (samples [block*B, block*B + B)) from its boundary counts `start`
  // towards the boundary counts `end` of the next block.
  void begin(const Plan& plan, std::int64_t block, const std::vector<std::int64_t>& start,
             const std::vector<std::int64_t>& end);
  // Emits the next sample: its dataset and its per-dataset sample index. Throws
  // std::logic_error if no domain can take the slot (cannot happen for a valid plan).
  void step(const Plan& plan, std::int32_t* dataset, std::int64_t* sample) {
    run(plan, 1, dataset, sample);
  }
  // Emits the next `count` samples into dataset[0..count) and sample[0..count).
  void run(const Plan& plan, std::int64_t count, std::int32_t* dataset, std::int64_t* sample);
  // Samples of the block already emitted.
  std::int64_t offset() const { return offset_; }
  // Counts now; after a full block they equal `end` (checked by the caller).
  const std::vector<std::int64_t>& counts() const { return count_; }

 private:
  // Moves the domains released at slot u into the ready heap and drops an emitted top that
  // nothing replaced.
  void release_due(const Plan& plan, std::uint64_t u);
  // Adds a released key to the ready heap (into the emitted top's place when that is free).
  void add_ready(std::uint64_t key);
  // Domain k (the emitted top) has a next job in the block: its key replaces the top if it is
  // released by slot u + 1, else it waits in the wheel or the far heap.
  void schedule_next(const Plan& plan, std::size_t k, std::uint64_t u);

  std::vector<std::int64_t> count_, end_;
  std::vector<std::uint64_t> q_, r_;  // fixed-point deadline of each domain's next job
  // Released domains: a binary min-heap of composite keys (deadline << index_bits | k) with a
  // sentinel (all ones) after its last element, so that sifting needs no bounds branch.
  std::vector<std::uint64_t> ready_;
  std::size_t num_ready_ = 0;
  bool top_taken_ = false;  // ready_[0] was emitted and awaits replacement or removal
  // Domains waiting for their release slot: a timing wheel of kWheelSize slots (intrusive
  // lists) for near releases, a min-heap of (release << index_bits | k) for far ones.
  std::vector<std::int32_t> wheel_head_, wheel_next_;
  std::vector<std::uint64_t> far_;
  std::int64_t offset_ = 0;
};

// Slots covered by the timing wheel of pending releases (a power of two).
constexpr std::int64_t kWheelSize = 4096;

// Random access to the same sequence with memory O(K), independent of its length.
// A lookup in the block of the previous lookup, at or after it, walks forward from there;
// any other lookup recomputes the block's boundary counts (O(K) with 128-bit divisions) and
// walks from the block start: O(K + offset * log K) with offset < B.
class Cursor {
 public:
  explicit Cursor(Plan plan);
  // The dataset and the per-dataset sample of global sample `index` (>= 0).
  void lookup(std::int64_t index, std::int32_t* dataset, std::int64_t* sample);
  const Plan& plan() const { return plan_; }

 private:
  Plan plan_;
  BlockWalk walk_;
  std::vector<std::int64_t> start_, end_;
  std::int64_t block_ = -1;  // block of the walk, -1 before the first lookup
};

}  // namespace blend
}  // namespace regmix
