// The project's rules for a CLI11 command line, written once for both of mmuvisor's:
// `mmuvisor run` (vmm/cli/flags.cc) and `mmuvisor stress` (stress_options.cc). It lives
// here, in the lower of the two layers, so that both can use it.
//
// CLI11 splits the words (--flag VALUE, --flag=VALUE, positionals, subcommands) and
// generates the help; every flag's text is then read by the project's own parser for its
// type (ParseGuestMemSize, a duration, a fraction, one of a few names...), called when
// CLI11 meets the flag, so flags take effect in command-line order. Where CLI11 on its own
// would answer differently, the project's rule is kept:
//   - CLI11 prints and exits; Parse never does: it answers an absl::Status, InvalidArgument
//     for bad input, one line naming the flag and the value as the user wrote them:
//       --flag 'text': why              the flag's parser refused the text
//       --flag needs a value            nothing after it, or "--flag="
//       --flag 'text': takes no value   a switch given one ("--no-dma=1")
//       --flag given twice              when the command refuses repeats (Repeat::kRefuse)
//   - CLI11 fills "--flag=" with the next word: refused instead (above);
//   - CLI11 answers -h/--help once every flag is read; here it answers where it stands,
//     so a bad flag before it is the error and one after it is not looked at;
//   - CLI11 reads the words after "--" as positionals: Parse hands them back untouched
//     (`run`'s guest arguments); CLI11 never sees the first "--" or what follows.
// An app built with these functions is parsed once (flags remember being seen).
#ifndef MMUVISOR_VMM_STRESS_COMMAND_LINE_H_
#define MMUVISOR_VMM_STRESS_COMMAND_LINE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace mmuvisor::vmm::cmdline {

// Whether a flag may be given twice: `run` refuses it, `stress` lets the last one win.
enum class Repeat { kRefuse, kLastWins };

// Sets the field(s) a flag stands for from its text; the error's message is the "why"
// of "--flag 'text': why", or the whole message when it already starts with the flag's
// name (vmm::ParseGuestMemSize words its own, shared by run and stress).
using Setter = std::function<absl::Status(const std::string& text)>;

// A flag with one value, shown in the help as "--name VALUE_NAME  help".
CLI::Option* AddFlag(CLI::App& app, const std::string& name, const std::string& value_name,
                     const std::string& help, Repeat repeat, Setter set);

// The typed form: `parse(text)` answers absl::StatusOr<T>, stored into *field.
template <typename T, typename Parse>
CLI::Option* AddFlag(CLI::App& app, const std::string& name, const std::string& value_name,
                     const std::string& help, Repeat repeat, T* field, Parse parse) {
  return AddFlag(app, name, value_name, help, repeat,
                 [field, parse](const std::string& text) -> absl::Status {
                   auto value = parse(text);
                   if (!value.ok()) return value.status();
                   *field = *std::move(value);
                   return absl::OkStatus();
                 });
}

// A flag without a value: `on` runs each time it is given.
CLI::Option* AddSwitch(CLI::App& app, const std::string& name, const std::string& help,
                       std::function<void()> on);

// -h, --help for `app`: Parse answers help (with app's name) instead of parsing on.
void AddHelpFlag(CLI::App& app);

// A parser for a flag that takes one of a few names. `why` is the error's reason, e.g.
// "must be 'memfd' or 'anon'".
template <typename T>
std::function<absl::StatusOr<T>(const std::string&)> OneOf(
    std::vector<std::pair<std::string, T>> names, std::string why) {
  return [names = std::move(names), why = std::move(why)](const std::string& text)
             -> absl::StatusOr<T> {
    for (const auto& [name, value] : names) {
      if (text == name) return value;
    }
    return absl::InvalidArgumentError(why);
  };
}

struct ParsedWords {
  // -h/--help was met: the name of the app whose help it asks for.
  std::optional<std::string> help;
  bool dash_dash = false;                 // a "--" was given
  std::vector<std::string> after_dash_dash;  // the words after the first "--"
};

// Parses `args` (the words after the command's name) into the apps' flags. The words CLI11
// could not place (unknown flags, extra positionals) are left in app.remaining() (and in
// each subcommand's remaining()) when the app allows extras, for the caller to word the
// error; an app that does not allow them gets CLI11's message.
absl::StatusOr<ParsedWords> Parse(CLI::App& app, absl::Span<const std::string> args);

// --vcpus N, read the same by both commands: a whole number without a sign, from 1 to
// MMV_UCALL_MAX_VCPUS (one ucall block each). Errors: "not a whole number", "must be 1 to 32".
absl::StatusOr<uint32_t> ParseVcpus(absl::string_view text);

// A whole number without a sign in [min, max]: "not a whole number", "must be MIN to MAX".
absl::StatusOr<uint32_t> ParseCount(absl::string_view text, uint32_t min, uint32_t max);

// --slots N (guest RAM as N memslots), read the same by both commands: 1 to kMaxRamSlots;
// what KVM on the host allows (KVM_CAP_NR_MEMSLOTS) is checked when the VM is made.
inline constexpr uint32_t kMaxRamSlots = 4096;
absl::StatusOr<uint32_t> ParseSlots(absl::string_view text);

// --aliases K (guest RAM also at K more ranges), read the same by both commands: 0 to
// kMaxRamAliases (each alias is one more identity-mapped window in the guest's tables).
inline constexpr uint32_t kMaxRamAliases = 8;
absl::StatusOr<uint32_t> ParseAliases(absl::string_view text);

// "--flag" for "--flag" and "--flag=value"; nullopt for a word that is not a flag ("x",
// "-", "").
std::optional<std::string> FlagName(absl::string_view word);

// app.help() then reads: `usage`, the app's description, its positionals or commands, its
// flags by group (their help from column `column`), its footer.
void SetHelpFormat(CLI::App& app, const std::string& usage, size_t column);

}  // namespace mmuvisor::vmm::cmdline

#endif  // MMUVISOR_VMM_STRESS_COMMAND_LINE_H_
