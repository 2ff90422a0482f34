#include "tools/http_front/http_parser.h"

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace taskrt::http {
namespace {

ParseResult Error(int status, std::string reason) {
  ParseResult result;
  result.kind = ParseResult::Kind::kError;
  result.status = status;
  result.reason = std::move(reason);
  return result;
}

// RFC 9110 token characters.
bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::string_view("!#$%&'*+-.^_`|~").find(c) != absl::string_view::npos;
}

bool IsToken(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsTokenChar(c)) return false;
  }
  return true;
}

// Visible ASCII, space and tab; no other control characters.
bool IsFieldValue(absl::string_view s) {
  for (char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) return false;
  }
  return true;
}

// The request line: METHOD SP target SP HTTP/1.x
bool ParseRequestLine(absl::string_view line, RequestHead& head, std::string& reason) {
  std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
  if (parts.size() != 3) {
    reason = "the request line is not \"METHOD target HTTP/1.x\"";
    return false;
  }
  if (!IsToken(parts[0])) {
    reason = "the method is not a token";
    return false;
  }
  if (parts[1].empty() || parts[1][0] != '/') {
    reason = "the target must start with '/' (origin form)";
    return false;
  }
  for (char c : parts[1]) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      reason = "the target holds a control, space or non-ASCII byte";
      return false;
    }
  }
  if (parts[2] == "HTTP/1.1") {
    head.minor_version = 1;
  } else if (parts[2] == "HTTP/1.0") {
    head.minor_version = 0;
  } else {
    reason = absl::StrCat("unsupported version \"", absl::CHexEscape(parts[2]), "\" (HTTP/1.0 or HTTP/1.1)");
    return false;
  }
  head.method = std::string(parts[0]);
  head.target = std::string(parts[1]);
  const size_t question = head.target.find('?');
  head.path = head.target.substr(0, question);
  head.query = question == std::string::npos ? "" : head.target.substr(question + 1);
  return true;
}

}  // namespace

const std::string* RequestHead::Header(absl::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key == name) return &value;
  }
  return nullptr;
}

bool RequestHead::KeepAlive() const {
  const std::string* connection = Header("connection");
  if (connection != nullptr) {
    for (absl::string_view option : absl::StrSplit(*connection, ',')) {
      option = absl::StripAsciiWhitespace(option);
      if (absl::EqualsIgnoreCase(option, "close")) return false;
      if (absl::EqualsIgnoreCase(option, "keep-alive")) return true;
    }
  }
  return minor_version == 1;
}

bool RequestHead::HasBody() const {
  if (Header("transfer-encoding") != nullptr) return true;
  const std::string* length = Header("content-length");
  uint64_t n = 0;
  return length != nullptr && (!absl::SimpleAtoi(*length, &n) || n > 0);
}

ParseResult ParseRequestHead(absl::string_view buffer, size_t max_header_bytes) {
  ParseResult result;
  size_t position = 0;
  bool first_line = true;
  while (true) {
    const size_t end = buffer.find('\n', position);
    if (end == absl::string_view::npos) {
      if (buffer.size() > max_header_bytes) {
        return Error(431, absl::StrCat("the request head is over ", max_header_bytes, " bytes"));
      }
      return result;  // kIncomplete
    }
    if (end + 1 > max_header_bytes) {
      return Error(431, absl::StrCat("the request head is over ", max_header_bytes, " bytes"));
    }
    if (end == position || buffer[end - 1] != '\r') return Error(400, "a line does not end in CRLF");
    absl::string_view line = buffer.substr(position, end - 1 - position);
    position = end + 1;
    if (first_line) {
      // RFC 9112 2.2: ignore at least one empty line before the request line.
      if (line.empty() && position <= 2) continue;
      std::string reason;
      if (!ParseRequestLine(line, result.head, reason)) return Error(400, reason);
      first_line = false;
      continue;
    }
    if (line.empty()) {
      if (result.head.minor_version == 1 && result.head.Header("host") == nullptr) {
        return Error(400, "an HTTP/1.1 request needs a Host header");
      }
      result.kind = ParseResult::Kind::kComplete;
      result.consumed = position;
      return result;
    }
    if (line[0] == ' ' || line[0] == '\t') return Error(400, "obsolete line folding is not accepted");
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) return Error(400, "a header line has no ':'");
    absl::string_view name = line.substr(0, colon);
    if (!IsToken(name)) return Error(400, "a header name is not a token (or has space before ':')");
    absl::string_view value = absl::StripAsciiWhitespace(line.substr(colon + 1));
    if (!IsFieldValue(value)) return Error(400, "a header value holds a control character");
    result.head.headers.emplace_back(absl::AsciiStrToLower(name), std::string(value));
  }
}

std::vector<std::pair<std::string, std::string>> ParseQuery(absl::string_view query) {
  std::vector<std::pair<std::string, std::string>> params;
  for (absl::string_view part : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    params.emplace_back(std::string(kv.first), std::string(kv.second));
  }
  return params;
}

const std::string* QueryParam(const std::vector<std::pair<std::string, std::string>>& params,
                              absl::string_view key) {
  for (const auto& [name, value] : params) {
    if (name == key) return &value;
  }
  return nullptr;
}

}  // namespace taskrt::http
