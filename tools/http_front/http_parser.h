#ifndef TASKRT_TOOLS_HTTP_FRONT_HTTP_PARSER_H_
#define TASKRT_TOOLS_HTTP_FRONT_HTTP_PARSER_H_

// The request head of HTTP/1.x (RFC 9112): request line and header fields,
// no body. Strict where leniency would hide a broken client or let two
// parsers on the way read different requests from the same bytes
// (request smuggling). Refused with 400:
//  - bare LF line ends, obsolete line folding, whitespace before a field's
//    colon and control characters;
//  - a target that is neither origin form ("/path?query") nor absolute form
//    ("http://host:port/path?query", scheme http or https in any case;
//    RFC 9112 3.2.2); "*" and the authority form included;
//  - a second Content-Length line, even with the same value, and a value
//    that is not 1*DIGIT within uint64: no sign, list, hex or space
//    (RFC 9110 8.6);
//  - a second Host line, a Host value that is neither empty nor
//    uri-host [ ":" port ] (RFC 9112 3.2, RFC 3986: reg-name, IPv4, or an
//    IPv6 / IPvFuture literal in brackets; port = *DIGIT), and an HTTP/1.1
//    request without Host, even when its target is in absolute form.
// The authority of an absolute-form target follows the Host grammar (with a
// non-empty host) and replaces the Host value (RFC 9112 3.2.2).
// Transfer-Encoding together with Content-Length is parsed as is: the
// caller decides (the server refuses any body).

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace taskrt::http {

struct RequestHead {
  std::string method;
  std::string target;  // as sent: path and optional "?query", or absolute form
  std::string path;    // "/" for an absolute-form target without one
  std::string query;   // without the '?'
  // host[:port] the request is for: an absolute-form target's authority,
  // else the Host value (empty when there is none).
  std::string authority;
  int minor_version = 1;  // HTTP/1.<minor_version>
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased

  // The first value of header `name` (lower case), or nullptr.
  const std::string* Header(absl::string_view name) const;
  // Whether the connection stays open after the response (HTTP/1.1 unless
  // "Connection: close"; HTTP/1.0 only with "Connection: keep-alive").
  bool KeepAlive() const;
  // Whether the request announces a body (Content-Length > 0 or any
  // Transfer-Encoding).
  bool HasBody() const;
};

struct ParseResult {
  enum class Kind { kIncomplete, kComplete, kError };
  Kind kind = Kind::kIncomplete;
  RequestHead head;    // kComplete
  size_t consumed = 0; // kComplete: bytes of the head, blank line included
  int status = 0;      // kError: 400 or 431
  std::string reason;  // kError: what was wrong, for the response body
};

// Parses the head at the start of `buffer`. kIncomplete while the blank line
// has not arrived and the head is within `max_header_bytes`; 431 once it is
// longer; 400 for anything malformed (checked as soon as a line is whole).
ParseResult ParseRequestHead(absl::string_view buffer, size_t max_header_bytes);

// The value of `key` in a query string "a=1&b=2", or nullptr. No percent
// decoding: the server's parameters are plain numbers.
const std::string* QueryParam(const std::vector<std::pair<std::string, std::string>>& params,
                              absl::string_view key);
std::vector<std::pair<std::string, std::string>> ParseQuery(absl::string_view query);

}  // namespace taskrt::http

#endif  // TASKRT_TOOLS_HTTP_FRONT_HTTP_PARSER_H_
