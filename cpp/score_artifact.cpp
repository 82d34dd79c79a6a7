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
#include <torch/script.h>

#include <cstdio>
#include <fstream>
#include <iostream>
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

  // The argument types of predict_events (see README: "Exporting and serving").
  c10::List<c10::List<std::string>> event_types;
  c10::List<at::Tensor> timestamps;
  c10::List<c10::List<c10::optional<std::string>>> channels;
  c10::List<c10::List<c10::List<c10::optional<std::string>>>> attributes;
  c10::List<at::Tensor> numeric;
  std::vector<int64_t> cutoffs;
  for (const auto& name : order) {
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
  }
  const auto names = module.get_method("output_names")({}).toList();
  std::cout << "user";
  for (const auto& name : names) std::cout << "\t" << name.get().toStringRef();
  std::cout << "\n";
  auto rows = probabilities.accessor<float, 2>();
  for (size_t i = 0; i < order.size(); ++i) {
    std::cout << order[i];
    for (int64_t j = 0; j < rows.size(1); ++j) std::printf("\t%.9g", rows[i][j]);
    std::cout << "\n";
    std::cout.flush();
  }
  return 0;
}
