// One pass over the tree section of a LightGBM text model (see lgbm_text.h for what is read).
#include "lgbm_text.h"

#include <array>
#include <charconv>
#include <limits>
#include <string_view>
#include <type_traits>

namespace regmix {
namespace trees {

namespace {

// The per-tree fields, in the order of `Fields::value`.
enum Field { kNumLeaves, kSplitFeature, kThreshold, kDecisionType, kLeftChild, kRightChild, kLeafValue, kNumFields };
constexpr std::array<std::string_view, kNumFields> kFieldNames = {
    "num_leaves", "split_feature", "threshold", "decision_type", "left_child", "right_child", "leaf_value"};

struct Fields {
    std::array<std::string_view, kNumFields> value{};
    std::array<bool, kNumFields> seen{};
};

std::string_view strip_spaces(std::string_view s) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    return s;
}

// A decimal numeral as Python's float() and from_chars both read it (no inf, nan, hex or '_').
bool plain_decimal(std::string_view token) {
    for (char c : token) {
        const bool ok = (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
        if (!ok) return false;
    }
    return !token.empty();
}

// `count` space-separated numbers of `text` appended to `out`; false on a wrong count, a token
// that is not wholly a number of that type, or an int out of int32 range.
template <typename T>
bool read_numbers(std::string_view text, int64_t count, std::vector<T>& out) {
    int64_t found = 0;
    size_t pos = 0;
    while (true) {
        while (pos < text.size() && text[pos] == ' ') ++pos;
        if (pos == text.size()) break;
        size_t end = text.find(' ', pos);
        if (end == std::string_view::npos) end = text.size();
        const char* first = text.data() + pos;
        const char* last = text.data() + end;
        if (++found > count) return false;
        if constexpr (std::is_same_v<T, double>) {
            if (!plain_decimal(std::string_view(first, end - pos))) return false;
            double v = 0.0;
            auto res = std::from_chars(first, last, v);
            if (res.ec != std::errc() || res.ptr != last) return false;
            out.push_back(v);
        } else {
            int64_t v = 0;
            auto res = std::from_chars(first, last, v);
            if (res.ec != std::errc() || res.ptr != last) return false;
            if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) return false;
            out.push_back(static_cast<int32_t>(v));
        }
        pos = end;
    }
    return found == count;
}

bool finish_tree(const Fields& f, TreeSection& out) {
    for (bool s : f.seen) {
        if (!s) return false;
    }
    const std::string_view leaves = strip_spaces(f.value[kNumLeaves]);
    int64_t num_leaves = 0;
    auto res = std::from_chars(leaves.data(), leaves.data() + leaves.size(), num_leaves);
    if (leaves.empty() || res.ec != std::errc() || res.ptr != leaves.data() + leaves.size()) return false;
    if (num_leaves < 1 || num_leaves > std::numeric_limits<int32_t>::max()) return false;
    const int64_t n = num_leaves - 1;
    if (n > 0) {  // a one-leaf tree's split fields are not read (as in the line-by-line reading)
        if (!read_numbers(f.value[kSplitFeature], n, out.split_feature)) return false;
        if (!read_numbers(f.value[kThreshold], n, out.threshold)) return false;
        if (!read_numbers(f.value[kDecisionType], n, out.decision_type)) return false;
        if (!read_numbers(f.value[kLeftChild], n, out.left_child)) return false;
        if (!read_numbers(f.value[kRightChild], n, out.right_child)) return false;
    }
    if (!read_numbers(f.value[kLeafValue], num_leaves, out.leaf_value)) return false;
    out.node_offset.push_back(out.node_offset.back() + n);
    out.leaf_offset.push_back(out.leaf_offset.back() + num_leaves);
    return true;
}

}  // namespace

bool read_tree_section(std::string_view body, TreeSection& out) {
    // Printable ASCII, spaces and line ends only ("\r" only before "\n"): then lines, keys and
    // values mean the same here as in Python's str.splitlines / str.strip / str.split.
    for (size_t i = 0; i < body.size(); ++i) {
        const unsigned char c = static_cast<unsigned char>(body[i]);
        if (c == '\n') continue;
        if (c == '\r') {
            if (i + 1 < body.size() && body[i + 1] == '\n') continue;
            return false;
        }
        if (c < 0x20 || c >= 0x7f) return false;
    }
    Fields fields;
    bool in_tree = false;
    size_t pos = 0;
    while (pos < body.size()) {
        size_t eol = body.find('\n', pos);
        if (eol == std::string_view::npos) eol = body.size();
        std::string_view line = body.substr(pos, eol - pos);
        pos = eol + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.substr(0, 5) == "Tree=") {
            if (in_tree && !finish_tree(fields, out)) return false;
            fields = Fields{};
            in_tree = true;
            continue;
        }
        const size_t eq = line.find('=');
        if (eq == std::string_view::npos) continue;
        if (!in_tree) return false;
        const std::string_view key = line.substr(0, eq);
        const std::string_view value = line.substr(eq + 1);
        if (key.find(' ') != std::string_view::npos) return false;  // " key" or "key ": leave it
        if (key == "is_linear") {
            const std::string_view v = strip_spaces(value);
            if (!(v.empty() || v == "0")) return false;
            continue;
        }
        if (key == "num_cat") {
            if (strip_spaces(value) != "0") return false;
            continue;
        }
        for (int k = 0; k < kNumFields; ++k) {
            if (key == kFieldNames[k]) {
                if (fields.seen[k]) return false;
                fields.seen[k] = true;
                fields.value[k] = value;
                break;
            }
        }
    }
    return in_tree && finish_tree(fields, out);
}

}  // namespace trees
}  // namespace regmix
