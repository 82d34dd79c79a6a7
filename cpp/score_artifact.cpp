// Scores raw events with an engage_seq artifact from C++ (libtorch), without Python.
//
//   score_artifact <artifact.pt> <events.tsv> <cutoff epoch seconds>
//
// events.tsv: one event per line, tab-separated, no header:
//   user  timestamp(epoch s)  event_type  channel  [categorical attributes...]  [numeric...]
// in the artifact's attribute order (metadata.json: categorical_attributes, then
// numeric_attributes). An empty field is a missing value. Users are scored in order of first
// appearance; the artifact's predict_events does vocabulary lookup, scaling, time features,
// truncation and padding itself. Prints a header of output names, then one line per user.
//
// Like engage-score, a user with no event strictly before the cutoff is skipped (the model has
// nothing to read) and counted on stderr; no user to score at all is exit 2 with a message
// (pass a later cutoff). Exit 1: unreadable artifact or input, or no events.
#include <torch/script.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> fields;
  std::stringstream stream(line);
  std::string field;
  while (std::getline(stream, field, '\t')) fields.push_back(field);
  if (!line.empty() && line.back() == '\t') fields.emplace_back();
  return fields;
}

c10::optional<std::string> optional_field(const std::string& value) {
  if (value.empty()) return c10::nullopt;
  return value;
}

struct UserEvents {
  std::vector<std::string> event_types;
  std::vector<int64_t> timestamps;
  std::vector<c10::optional<std::string>> channels;
  std::vector<std::vector<c10::optional<std::string>>> attributes;  // [attribute][event]
  std::vector<double> numeric;                                        // row-major (event, F)
};

// "2026-05-05 00:00:00 UTC": the message names instants a person can check against the data.
std::string utc(int64_t epoch_seconds) {
  const std::time_t when = static_cast<std::time_t>(epoch_seconds);
  std::tm parts{};
  char text[32] = "?";
  if (gmtime_r(&when, &parts) != nullptr) {
    std::strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S UTC", &parts);
  }
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: score_artifact <artifact.pt> <events.tsv> <cutoff epoch seconds>\n";
    return 2;
  }
  torch::jit::script::Module module;
  try {
    module = torch::jit::load(argv[1]);
  } catch (const c10::Error& error) {
    std::cerr << "cannot load " << argv[1] << ": " << error.what_without_backtrace() << "\n";
    return 1;
  }
  module.eval();
  const int64_t n_attributes = module.attr("n_attributes").toInt();
  const int64_t n_numeric = module.attr("n_numeric").toInt();
  int64_t cutoff = 0;
  try {
    cutoff = std::stoll(argv[3]);
  } catch (const std::exception&) {
    std::cerr << "cutoff must be epoch seconds, got '" << argv[3] << "'\n";
    return 1;
  }

  std::ifstream input(argv[2]);
  if (!input) {
    std::cerr << "cannot read " << argv[2] << "\n";
    return 1;
  }
  std::vector<std::string> order;
  std::map<std::string, UserEvents> users;
  std::string line;
  size_t line_number = 0;
  while (std::getline(input, line)) {
    ++line_number;
    if (line.empty()) continue;
    const auto fields = split_tabs(line);
    const size_t expected = 4 + n_attributes + n_numeric;
    if (fields.size() != expected) {
      std::cerr << argv[2] << ":" << line_number << ": " << fields.size() << " fields, expected "
                << expected << " (user, timestamp, event_type, channel, " << n_attributes
                << " categorical, " << n_numeric << " numeric)\n";
      return 1;
    }
    auto found = users.find(fields[0]);
    if (found == users.end()) {
      order.push_back(fields[0]);
      found = users.emplace(fields[0], UserEvents{}).first;
      found->second.attributes.resize(n_attributes);
    }
    UserEvents& user = found->second;
    try {
      user.timestamps.push_back(std::stoll(fields[1]));
      for (int64_t f = 0; f < n_numeric; ++f) {
        const std::string& value = fields[4 + n_attributes + f];
        user.numeric.push_back(value.empty() ? std::nan("") : std::stod(value));
      }
    } catch (const std::exception&) {
      std::cerr << argv[2] << ":" << line_number
                << ": timestamp (epoch seconds) or numeric field is not a number\n";
      return 1;
    }
    user.event_types.push_back(fields[2]);
    user.channels.push_back(optional_field(fields[3]));
    for (int64_t a = 0; a < n_attributes; ++a) {
      user.attributes[a].push_back(optional_field(fields[4 + a]));
    }
  }

  if (order.empty()) {
    std::cerr << argv[2] << " holds no events\n";
    return 1;
  }
  // Users with an event strictly before the cutoff, in first-appearance order. The others are
  // skipped, as engage-score skips them: predict_events refuses a user without history.
  std::vector<std::string> scored;
  size_t skipped = 0;
  int64_t latest = std::numeric_limits<int64_t>::min();
  for (const auto& name : order) {
    bool has_history = false;
    for (const int64_t timestamp : users[name].timestamps) {
      has_history = has_history || timestamp < cutoff;
      latest = std::max(latest, timestamp);
    }
    if (has_history) {
      scored.push_back(name);
    } else {
      ++skipped;
    }
  }
  if (scored.empty()) {
    std::cerr << "no user has an event before the cutoff " << cutoff << " (" << utc(cutoff)
              << ") in " << argv[2] << "; the latest event is at " << latest << " ("
              << utc(latest) << "): pass a later cutoff";
    if (latest > 100000000000LL) std::cerr << " (timestamps must be epoch seconds, not ms)";
    std::cerr << "\n";
    return 2;
  }

  // The argument types of predict_events (see README: "Exporting and serving").
  c10::List<c10::List<std::string>> event_types;
  c10::List<at::Tensor> timestamps;
  c10::List<c10::List<c10::optional<std::string>>> channels;
  c10::List<c10::List<c10::List<c10::optional<std::string>>>> attributes;
  c10::List<at::Tensor> numeric;
  std::vector<int64_t> cutoffs;
  for (const auto& name : scored) {
    UserEvents& user = users[name];
    const auto n = static_cast<int64_t>(user.event_types.size());
    event_types.push_back(c10::List<std::string>(user.event_types));
    timestamps.push_back(torch::tensor(user.timestamps, torch::kLong));
    channels.push_back(c10::List<c10::optional<std::string>>(user.channels));
    c10::List<c10::List<c10::optional<std::string>>> per_attribute;
    for (const auto& values : user.attributes) {
      per_attribute.push_back(c10::List<c10::optional<std::string>>(values));
    }
    attributes.push_back(per_attribute);
    numeric.push_back(
        torch::tensor(user.numeric, torch::kDouble).reshape({n, n_numeric}).clone());
    cutoffs.push_back(cutoff);
  }

  torch::NoGradGuard no_grad;
  at::Tensor probabilities;
  try {
    probabilities = module
                        .get_method("predict_events")({event_types, timestamps, channels,
                                                       attributes, numeric,
                                                       torch::tensor(cutoffs, torch::kLong)})
                        .toTensor();
  } catch (const c10::Error& error) {
    std::cerr << "predict_events failed: " << error.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& error) {  // the module's own raise: torch::jit::JITException
    std::cerr << "predict_events failed: " << error.what() << "\n";
    return 1;
  }
  const auto names = module.get_method("output_names")({}).toList();
  std::cout << "user";
  for (const auto& name : names) std::cout << "\t" << name.get().toStringRef();
  std::cout << "\n";
  auto rows = probabilities.accessor<float, 2>();
  for (size_t i = 0; i < scored.size(); ++i) {
    std::cout << scored[i];
    for (int64_t j = 0; j < rows.size(1); ++j) std::printf("\t%.9g", rows[i][j]);
    std::cout << "\n";
    std::cout.flush();
  }
  if (skipped > 0) {
    std::cerr << "skipped " << skipped << (skipped == 1 ? " user" : " users")
              << " with no event before the cutoff " << cutoff << " (" << utc(cutoff) << ")\n";
  }
  return 0;
}
