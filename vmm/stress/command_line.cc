#include "vmm/stress/command_line.h"

#include <algorithm>
#include <iterator>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "mmuvisor/guest_abi.h"

namespace mmuvisor::vmm::cmdline {
namespace {

// Thrown by a flag's callback while CLI11 parses; Parse turns it into InvalidArgument.
class FlagError : public CLI::ParseError {
 public:
  explicit FlagError(const std::string& message)
      : CLI::ParseError(message, CLI::ExitCodes::ValidationError) {}
};

// Thrown by -h/--help: Parse answers help for `topic` (the app's name).
class HelpRequested : public CLI::ParseError {
 public:
  explicit HelpRequested(std::string app_name)
      : CLI::ParseError("help", CLI::ExitCodes::Success), topic(std::move(app_name)) {}
  std::string topic;
};

std::string Why(const std::string& name, const std::string& text, const absl::Status& status) {
  if (absl::StartsWith(status.message(), name)) return std::string(status.message());
  return absl::StrCat(name, " '", text, "': ", status.message());
}

// The option `word` ("--name" or "--name=...") names in `app`, or null.
const CLI::Option* FindFlag(const CLI::App& app, absl::string_view word) {
  const std::optional<std::string> name = FlagName(word);
  return name ? app.get_option_no_throw(*name) : nullptr;
}

// "--flag=" with nothing after the '=': CLI11 would take the next word as its value.
absl::Status CheckEmptyValues(const CLI::App& app, absl::Span<const std::string> words) {
  for (const std::string& word : words) {
    if (!absl::StartsWith(word, "--") || !absl::EndsWith(word, "=")) continue;
    const CLI::Option* flag = FindFlag(app, word);
    if (flag == nullptr) continue;  // unknown: the caller words that
    const std::string name = *FlagName(word);
    if (flag->get_expected_max() == 0) {
      return absl::InvalidArgumentError(absl::StrCat(name, " '': takes no value"));
    }
    return absl::InvalidArgumentError(absl::StrCat(name, " needs a value"));
  }
  return absl::OkStatus();
}

class UsageFormatter : public CLI::Formatter {
 public:
  explicit UsageFormatter(std::string usage) : usage_(std::move(usage)) {}
  std::string make_usage(const CLI::App*, std::string) const override { return usage_ + "\n"; }
  // Usage first, then what the command does, its arguments or commands, its flags, then
  // the notes.
  std::string make_help(const CLI::App* app, std::string name,
                        CLI::AppFormatMode mode) const override {
    return absl::StrCat(make_usage(app, name), "\n", make_description(app),
                        make_positionals(app), make_subcommands(app, mode),
                        FlagGroups(app), make_footer(app));
  }
  // Each group of flags after one blank line (CLI11's make_groups leaves two).
  std::string FlagGroups(const CLI::App* app) const {
    std::string out;
    for (const std::string& group : app->get_groups()) {
      const std::vector<const CLI::Option*> flags = app->get_options(
          [&group](const CLI::Option* o) { return o->get_group() == group && o->nonpositional(); });
      if (!flags.empty()) out += make_group(group, false, flags);
    }
    return out;
  }
  // "-h, --help" (CLI11: "-h,--help").
  std::string make_option_name(const CLI::Option* opt, bool is_positional) const override {
    return absl::StrReplaceAll(Formatter::make_option_name(opt, is_positional), {{",", ", "}});
  }

 private:
  std::string usage_;
};

}  // namespace

CLI::Option* AddFlag(CLI::App& app, const std::string& name, const std::string& value_name,
                     const std::string& help, Repeat repeat, Setter set) {
  CLI::callback_t callback = [name, repeat, set = std::move(set), seen = false](
                                 const CLI::results_t& results) mutable {
    if (seen && repeat == Repeat::kRefuse) throw FlagError(absl::StrCat(name, " given twice"));
    seen = true;
    const std::string& text = results.back();
    if (text.empty()) throw FlagError(absl::StrCat(name, " needs a value"));
    if (absl::Status status = set(text); !status.ok()) throw FlagError(Why(name, text, status));
    return true;
  };
  return app.add_option(name, std::move(callback), help)
      ->type_name(value_name)
      ->trigger_on_parse();
}

CLI::Option* AddSwitch(CLI::App& app, const std::string& name, const std::string& help,
                       std::function<void()> on) {
  // Expecting no value, CLI11 hands over "" for "--name" and "value" for "--name=value".
  // "-h,--help": errors name the last form.
  const std::string shown = name.substr(name.rfind(',') + 1);
  CLI::callback_t callback = [shown, on = std::move(on)](const CLI::results_t& results) {
    if (!results.back().empty()) {
      throw FlagError(absl::StrCat(shown, " '", results.back(), "': takes no value"));
    }
    on();
    return true;
  };
  return app.add_option(name, std::move(callback), help)->expected(0, 0)->trigger_on_parse();
}

void AddHelpFlag(CLI::App& app) {
  app.set_help_flag();  // CLI11's own answers only once every flag is read (header)
  AddSwitch(app, "-h,--help", "this text", [&app] { throw HelpRequested(app.get_name()); });
}

absl::StatusOr<ParsedWords> Parse(CLI::App& app, absl::Span<const std::string> args) {
  ParsedWords parsed;
  const auto dash = std::find(args.begin(), args.end(), "--");
  const absl::Span<const std::string> flags = args.subspan(0, dash - args.begin());
  if (dash != args.end()) {
    parsed.dash_dash = true;
    parsed.after_dash_dash.assign(dash + 1, args.end());
  }
  if (absl::Status empty = CheckEmptyValues(app, flags); !empty.ok()) return empty;
  std::vector<std::string> reversed(flags.rbegin(), flags.rend());  // as CLI11 takes them
  try {
    app.parse(reversed);
  } catch (const HelpRequested& help) {
    parsed.help = help.topic;
  } catch (const FlagError& error) {
    return absl::InvalidArgumentError(error.what());
  } catch (const CLI::ArgumentMismatch& error) {
    // A flag takes the word after it, whatever it is: only the last word can lack one.
    const std::optional<std::string> last =
        flags.empty() ? std::nullopt : FlagName(flags.back());
    if (!last) return absl::InvalidArgumentError(error.what());
    return absl::InvalidArgumentError(absl::StrCat(*last, " needs a value"));
  } catch (const CLI::ParseError& error) {
    return absl::InvalidArgumentError(error.what());
  }
  return parsed;
}

absl::StatusOr<uint32_t> ParseCount(absl::string_view text, uint32_t min, uint32_t max) {
  uint32_t n = 0;
  if (!absl::SimpleAtoi(text, &n) || absl::StartsWith(text, "+") ||
      absl::StartsWith(text, "-")) {
    return absl::InvalidArgumentError("not a whole number");
  }
  if (n < min || n > max) {
    return absl::InvalidArgumentError(absl::StrFormat("must be %u to %u", min, max));
  }
  return n;
}

absl::StatusOr<uint32_t> ParseVcpus(absl::string_view text) {
  return ParseCount(text, 1, MMV_UCALL_MAX_VCPUS);
}

absl::StatusOr<uint32_t> ParseSlots(absl::string_view text) {
  return ParseCount(text, 1, kMaxRamSlots);
}

absl::StatusOr<uint32_t> ParseAliases(absl::string_view text) {
  return ParseCount(text, 0, kMaxRamAliases);
}

std::optional<std::string> FlagName(absl::string_view word) {
  if (word.size() < 2 || word[0] != '-') return std::nullopt;
  return std::string(word.substr(0, word.find('=')));
}

void SetHelpFormat(CLI::App& app, const std::string& usage, size_t column) {
  auto formatter = std::make_shared<UsageFormatter>(usage);
  formatter->column_width(column);
  formatter->label("Positionals", "Arguments");
  formatter->label("Subcommands", "Commands");
  app.formatter(std::move(formatter));
}

}  // namespace mmuvisor::vmm::cmdline
