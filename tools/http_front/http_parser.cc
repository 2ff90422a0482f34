#include "tools/http_front/http_parser.h"

#include <algorithm>
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

bool IsDigits(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

bool IsHexDigits(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// RFC 3986 unreserved and sub-delims.
bool IsUnreservedOrSubDelim(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::string_view("-._~!$&'()*+,;=").find(c) != absl::string_view::npos;
}

// RFC 3986 reg-name: *( unreserved / pct-encoded / sub-delims ).
bool IsRegName(absl::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size() || !IsHexDigits(s.substr(i + 1, 2))) return false;
      i += 2;
    } else if (!IsUnreservedOrSubDelim(s[i])) {
      return false;
    }
  }
  return true;
}

// RFC 3986 IPv4address: four dec-octets 0-255, no leading zeros.
bool IsIpv4(absl::string_view s) {
  std::vector<absl::string_view> octets = absl::StrSplit(s, '.');
  if (octets.size() != 4) return false;
  for (absl::string_view octet : octets) {
    int n = 0;
    if (!IsDigits(octet) || octet.size() > 3 || (octet.size() > 1 && octet[0] == '0') ||
        !absl::SimpleAtoi(octet, &n) || n > 255) {
      return false;
    }
  }
  return true;
}

// The number of 16-bit pieces in `side`, one side of an IPv6 address's
// "::" (or the whole address): colon-separated h16, the last of which may be
// an IPv4 address (two pieces) when `last`. -1 when malformed.
int Ipv6Pieces(absl::string_view side, bool last) {
  if (side.empty()) return 0;
  std::vector<absl::string_view> pieces = absl::StrSplit(side, ':');
  int count = 0;
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (last && i + 1 == pieces.size() && IsIpv4(pieces[i])) {
      count += 2;
    } else if (IsHexDigits(pieces[i]) && pieces[i].size() <= 4) {
      count += 1;
    } else {
      return -1;  // an empty piece too: a stray ':' or a second "::"
    }
  }
  return count;
}

// RFC 3986 IPv6address: eight pieces, or fewer with one "::" standing for
// at least one zero piece.
bool IsIpv6(absl::string_view s) {
  const size_t gap = s.find("::");
  if (gap == absl::string_view::npos) return Ipv6Pieces(s, /*last=*/true) == 8;
  const int before = Ipv6Pieces(s.substr(0, gap), /*last=*/false);
  const int after = Ipv6Pieces(s.substr(gap + 2), /*last=*/true);
  return before >= 0 && after >= 0 && before + after <= 7;
}

// RFC 3986 IP-literal: "[" ( IPv6address / IPvFuture ) "]", where IPvFuture
// is "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" ).
bool IsIpLiteral(absl::string_view s) {
  if (s.size() < 2 || s.front() != '[' || s.back() != ']') return false;
  s = s.substr(1, s.size() - 2);
  if (s.empty() || (s[0] != 'v' && s[0] != 'V')) return IsIpv6(s);
  const size_t dot = s.find('.');
  if (dot == absl::string_view::npos || !IsHexDigits(s.substr(1, dot - 1)) || dot + 1 == s.size()) {
    return false;
  }
  for (char c : s.substr(dot + 1)) {
    if (c != ':' && !IsUnreservedOrSubDelim(c)) return false;
  }
  return true;
}

// uri-host [ ":" port ] (RFC 9112 3.2, RFC 3986 3.2.2-3.2.3) with a
// non-empty host: the Host value and an absolute target's authority. No
// userinfo: RFC 9110 4.2.4 has recipients treat it as an error.
bool IsHostAndPort(absl::string_view s) {
  absl::string_view host = s;
  absl::string_view rest;
  if (!s.empty() && s[0] == '[') {
    const size_t close = s.find(']');
    if (close == absl::string_view::npos) return false;
    host = s.substr(0, close + 1);
    rest = s.substr(close + 1);
    if (!IsIpLiteral(host)) return false;
  } else {
    // A reg-name holds no ':', so the first one starts the port.
    const size_t colon = s.find(':');
    if (colon != absl::string_view::npos) {
      host = s.substr(0, colon);
      rest = s.substr(colon);
    }
    // RFC 9110 4.2.1: an http(s) URI with an empty host is invalid.
    if (host.empty() || !IsRegName(host)) return false;
  }
  if (rest.empty()) return true;
  // port = *DIGIT: RFC 3986 allows it empty ("host:").
  return rest[0] == ':' && (rest.size() == 1 || IsDigits(rest.substr(1)));
}

// RFC 9112 3.2.2 absolute form for the schemes served here:
// ("http" / "https") "://" authority path-abempty [ "?" query ]. Splits
// `target` into its authority and the rest ("" or starting with '/' or
// '?'); false when the scheme part does not match.
bool SplitAbsoluteForm(absl::string_view target, absl::string_view& authority,
                       absl::string_view& rest) {
  const size_t separator = target.find("://");
  if (separator == absl::string_view::npos) return false;
  const absl::string_view scheme = target.substr(0, separator);
  if (!absl::EqualsIgnoreCase(scheme, "http") && !absl::EqualsIgnoreCase(scheme, "https")) return false;
  target.remove_prefix(separator + 3);
  const size_t end = std::min(target.find_first_of("/?"), target.size());
  authority = target.substr(0, end);
  rest = target.substr(end);
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
  // The origin form is "/path?query"; the absolute form's authority is
  // checked and its path and query taken the same way.
  absl::string_view authority;
  absl::string_view path_and_query = parts[1];
  if (parts[1].empty() ||
      (parts[1][0] != '/' && !SplitAbsoluteForm(parts[1], authority, path_and_query))) {
    reason = "the target must be origin form (\"/path\") or absolute form (\"http://host/path\")";
    return false;
  }
  for (char c : parts[1]) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      reason = "the target holds a control, space or non-ASCII byte";
      return false;
    }
  }
  if (parts[1][0] != '/' && !IsHostAndPort(authority)) {
    reason = "the target's authority is not host[:port]";
    return false;
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
  head.authority = std::string(authority);
  const size_t question = path_and_query.find('?');
  head.path = std::string(path_and_query.substr(0, question));
  if (head.path.empty()) head.path = "/";  // RFC 9112 3.2.2: absolute form without a path
  head.query = question == absl::string_view::npos ? "" : std::string(path_and_query.substr(question + 1));
  return true;
}

// Checks a header line against the ones before it, for the fields where a
// second line or a loose value lets two parsers disagree on where the
// request ends or whom it is for.
bool CheckField(const RequestHead& head, absl::string_view name, absl::string_view value,
                std::string& reason) {
  if (name == "content-length") {
    // RFC 9110 8.6 lets a recipient merge "5, 5" or repeated lines; refusing
    // them leaves no room for a proxy that picks another one.
    if (head.Header(name) != nullptr) {
      reason = "more than one Content-Length header line";
      return false;
    }
    uint64_t length = 0;
    if (!IsDigits(value)) {
      reason = "Content-Length is not a plain decimal number (1*DIGIT)";
      return false;
    }
    if (!absl::SimpleAtoi(value, &length)) {
      reason = "Content-Length is too large";
      return false;
    }
  } else if (name == "host") {
    if (head.Header(name) != nullptr) {
      reason = "more than one Host header line";
      return false;
    }
    // RFC 9112 3.2: empty when the target has no authority.
    if (!value.empty() && !IsHostAndPort(value)) {
      reason = "the Host header is not host[:port]";
      return false;
    }
  }
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
      const std::string* host = result.head.Header("host");
      // RFC 9112 3.2: required even when an absolute target names the host.
      if (result.head.minor_version == 1 && host == nullptr) {
        return Error(400, "an HTTP/1.1 request needs a Host header");
      }
      // RFC 9112 3.2.2: an absolute target's authority wins over Host.
      if (result.head.authority.empty() && host != nullptr) result.head.authority = *host;
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
    std::string lower_name = absl::AsciiStrToLower(name);
    std::string reason;
    if (!CheckField(result.head, lower_name, value, reason)) return Error(400, reason);
    result.head.headers.emplace_back(std::move(lower_name), std::string(value));
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
