#include "tools/http_front/http_parser.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace taskrt::http {
namespace {

using Kind = ParseResult::Kind;

TEST(ParseRequestHead, ParsesAWholeHead) {
  const std::string text = "GET /primes?below=10&stream=1 HTTP/1.1\r\nHost: x\r\nX-A:  b c \r\n\r\nrest";
  ParseResult r = ParseRequestHead(text, 8192);
  ASSERT_EQ(r.kind, Kind::kComplete) << r.reason;
  EXPECT_EQ(r.consumed, text.size() - 4);
  EXPECT_EQ(r.head.method, "GET");
  EXPECT_EQ(r.head.path, "/primes");
  EXPECT_EQ(r.head.query, "below=10&stream=1");
  ASSERT_NE(r.head.Header("x-a"), nullptr);
  EXPECT_EQ(*r.head.Header("x-a"), "b c");
  EXPECT_TRUE(r.head.KeepAlive());
  EXPECT_FALSE(r.head.HasBody());
  const auto params = ParseQuery(r.head.query);
  ASSERT_NE(QueryParam(params, "below"), nullptr);
  EXPECT_EQ(*QueryParam(params, "below"), "10");
  EXPECT_EQ(QueryParam(params, "mib"), nullptr);
}

TEST(ParseRequestHead, WaitsForTheBlankLineAtEveryCut) {
  const std::string text = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  for (size_t cut = 0; cut < text.size(); ++cut) {
    EXPECT_EQ(ParseRequestHead(text.substr(0, cut), 8192).kind, Kind::kIncomplete) << cut;
  }
}

TEST(ParseRequestHead, KeepAliveFollowsVersionAndConnectionHeader) {
  EXPECT_FALSE(ParseRequestHead("GET / HTTP/1.0\r\n\r\n", 8192).head.KeepAlive());
  EXPECT_TRUE(ParseRequestHead("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 8192).head.KeepAlive());
  EXPECT_FALSE(ParseRequestHead("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 8192).head.KeepAlive());
}

TEST(ParseRequestHead, RefusesMalformedHeadsWith400) {
  for (const char* text : {
           "GET /\r\n\r\n",                               // no version
           "GET / HTTP/2.0\r\nHost: x\r\n\r\n",           // unsupported version
           "GET  / HTTP/1.1\r\nHost: x\r\n\r\n",          // double space
           "GET x HTTP/1.1\r\nHost: x\r\n\r\n",           // neither origin nor absolute form
           "G(T / HTTP/1.1\r\nHost: x\r\n\r\n",           // method not a token
           "GET / HTTP/1.1\nHost: x\n\n",                 // bare LF
           "GET / HTTP/1.1\r\nHost x\r\n\r\n",            // no colon
           "GET / HTTP/1.1\r\nHost : x\r\n\r\n",          // space before colon
           "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",  // obsolete folding
           "GET / HTTP/1.1\r\nHost: a\x01z\r\n\r\n",      // control character
           "GET / HTTP/1.1\r\n\r\n",                      // 1.1 without Host
       }) {
    ParseResult r = ParseRequestHead(text, 8192);
    EXPECT_EQ(r.kind, Kind::kError) << text;
    EXPECT_EQ(r.status, 400) << text;
    EXPECT_FALSE(r.reason.empty()) << text;
  }
}

TEST(ParseRequestHead, RefusesOversizedHeadsWith431EvenIncomplete) {
  const std::string long_header = "GET / HTTP/1.1\r\nHost: x\r\nX: " + std::string(200, 'a');
  ParseResult incomplete = ParseRequestHead(long_header, 100);
  EXPECT_EQ(incomplete.kind, Kind::kError);
  EXPECT_EQ(incomplete.status, 431);
  ParseResult complete = ParseRequestHead(long_header + "\r\n\r\n", 100);
  EXPECT_EQ(complete.status, 431);
  EXPECT_EQ(ParseRequestHead(long_header + "\r\n\r\n", 1000).kind, Kind::kComplete);
}

TEST(ParseRequestHead, SeesBodies) {
  EXPECT_TRUE(ParseRequestHead("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n", 8192).head.HasBody());
  EXPECT_FALSE(ParseRequestHead("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 8192).head.HasBody());
  EXPECT_TRUE(ParseRequestHead("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 8192)
                  .head.HasBody());
}

// Expects `text` to be refused with 400 and a reason.
void ExpectRefused(const std::string& text) {
  ParseResult r = ParseRequestHead(text, 8192);
  EXPECT_EQ(r.kind, Kind::kError) << text;
  EXPECT_EQ(r.status, 400) << text;
  EXPECT_FALSE(r.reason.empty()) << text;
}

TEST(ParseRequestHead, RefusesTheSmugglingPairOfContentLengths) {
  // Read with the first length, the 44 "body" bytes would be a second request.
  const std::string text =
      "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n"
      "GET /hash?mib=1 HTTP/1.1\r\nHost: x\r\n\r\n";
  ParseResult r = ParseRequestHead(text, 8192);
  EXPECT_EQ(r.kind, Kind::kError);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.reason, "more than one Content-Length header line");
  // As soon as the second line is whole, before the blank line.
  EXPECT_EQ(ParseRequestHead("GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 44\r\n", 8192).status,
            400);
}

TEST(ParseRequestHead, RefusesRepeatedContentLengthsEvenWhenEqual) {
  for (const char* text : {
           "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\nCONTENT-LENGTH: 0\r\n\r\n",
           "GET / HTTP/1.0\r\nContent-Length: 0\r\nX: y\r\nContent-Length: 0\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n"
           "Content-Length: 1\r\n\r\n",
       }) {
    ExpectRefused(text);
  }
}

TEST(ParseRequestHead, RefusesContentLengthsThatAreNotDigits) {
  for (const char* value : {"+0", "-1", "0x10", "1,1", "1, 1", "1 1", "", "1.0", "1e3", "a", "\t5\t7",
                            "18446744073709551616", "99999999999999999999999999"}) {
    ExpectRefused(std::string("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: ") + value + "\r\n\r\n");
  }
}

TEST(ParseRequestHead, AcceptsPlainContentLengths) {
  for (const char* value : {"0", "7", "007", " 12 ", "18446744073709551615"}) {
    const std::string text = std::string("GET / HTTP/1.1\r\nHost: x\r\nContent-Length:") + value + "\r\n\r\n";
    ParseResult r = ParseRequestHead(text, 8192);
    EXPECT_EQ(r.kind, Kind::kComplete) << text << r.reason;
  }
}

TEST(ParseRequestHead, RefusesASecondHostLine) {
  ExpectRefused("GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n");
  ExpectRefused("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n");
  ExpectRefused("GET / HTTP/1.1\r\nHost:\r\nHost: b\r\n\r\n");
  ExpectRefused("GET / HTTP/1.0\r\nHost: a\r\nHOST: a\r\n\r\n");
}

TEST(ParseRequestHead, RefusesMalformedHostValues) {
  for (const char* value : {
           "a b", "a@b", "user@host:80", "a/b", "a?b", "a#b", "a\"b", "a<b", "a\\b", "a%4", "a%zz",
           "http://a", ":80", ":", "a:8o", "a:-1", "a:+1", "a:80:90", "a: 80", "[::1", "::1", "[::1]x",
           "[::1]80", "[::1]:x", "[]", "[1.2.3.4]", "[::g]", "[1::2::3]", "[:1::2]", "[1::2:]",
           "[12345::]", "[1:2:3:4:5:6:7:8:9]", "[1:2:3:4:5:6:7]", "[1:2:3:4:5:6:7::8]",
           "[::1.2.3.256]", "[::1.2.3]", "[::01.2.3.4]", "[1.2.3.4::]", "[v.x]", "[vg.x]", "[v1.]",
           "[v1x]", "[v1.a/b]", "\xc3\xa9.example",
       }) {
    ExpectRefused(std::string("GET / HTTP/1.1\r\nHost: ") + value + "\r\n\r\n");
  }
}

TEST(ParseRequestHead, AcceptsHostForms) {
  for (const char* value : {
           "", "x", "example.com", "Example.COM:8080", "127.0.0.1", "127.0.0.1:80", "999.1.1.1",
           "a-b_c~d.e", "!$&'()*+,;=", "%41%2f", "x:", "x:0080", "[::1]", "[::1]:8080", "[::]",
           "[2001:db8::1]", "[2001:DB8:0:0:0:0:0:1]", "[1:2:3:4:5:6:7::]", "[::ffff:192.0.2.1]",
           "[1:2:3:4:5:6:1.2.3.4]", "[v1.fe80::a+en1]", "[V7F.x:y]",
       }) {
    const std::string text = std::string("GET / HTTP/1.1\r\nHost: ") + value + "\r\n\r\n";
    ParseResult r = ParseRequestHead(text, 8192);
    ASSERT_EQ(r.kind, Kind::kComplete) << text << r.reason;
    EXPECT_EQ(*r.head.Header("host"), value);
    EXPECT_EQ(r.head.authority, value);
  }
  // HTTP/1.1 without Host stays refused; HTTP/1.0 needs none.
  ExpectRefused("GET / HTTP/1.1\r\nX: y\r\n\r\n");
  ParseResult r = ParseRequestHead("GET / HTTP/1.0\r\n\r\n", 8192);
  EXPECT_EQ(r.kind, Kind::kComplete);
  EXPECT_EQ(r.head.authority, "");
}

TEST(ParseRequestHead, AcceptsAbsoluteFormTargets) {
  struct Case {
    const char* target;
    const char* authority;
    const char* path;
    const char* query;
  };
  for (const Case& c : std::vector<Case>{
           {"http://example.com:8080/primes?below=10", "example.com:8080", "/primes", "below=10"},
           {"HTTPS://Example.COM", "Example.COM", "/", ""},
           {"hTtP://x/", "x", "/", ""},
           {"http://x?a=1&b", "x", "/", "a=1&b"},
           {"http://[::1]:80/a/b?", "[::1]:80", "/a/b", ""},
           {"https://127.0.0.1/hash?mib=1", "127.0.0.1", "/hash", "mib=1"},
           {"http://x:/p?q=http://y/", "x:", "/p", "q=http://y/"},
       }) {
    const std::string text = std::string("GET ") + c.target + " HTTP/1.1\r\nHost: other\r\n\r\n";
    ParseResult r = ParseRequestHead(text, 8192);
    ASSERT_EQ(r.kind, Kind::kComplete) << text << r.reason;
    EXPECT_EQ(r.head.target, c.target);
    // RFC 9112 3.2.2: the target's authority, not Host.
    EXPECT_EQ(r.head.authority, c.authority) << text;
    EXPECT_EQ(r.head.path, c.path) << text;
    EXPECT_EQ(r.head.query, c.query) << text;
  }
  // HTTP/1.0 needs no Host with either form.
  ParseResult r = ParseRequestHead("GET http://x:1/primes?below=3 HTTP/1.0\r\n\r\n", 8192);
  ASSERT_EQ(r.kind, Kind::kComplete) << r.reason;
  EXPECT_EQ(r.head.path, "/primes");
  EXPECT_EQ(r.head.query, "below=3");
  EXPECT_EQ(r.head.authority, "x:1");
}

TEST(ParseRequestHead, RefusesOtherTargets) {
  for (const char* target : {
           "*", "x", "example.com:80", "http", "http:", "http:/x/", "http:x", "http//x/", "ftp://x/",
           "httpx://x/", "ws://x/", "mailto:a@b", "://x/", "http:///", "http://", "http://?a",
           "http://:80/", "http://a@b/", "http://user:pw@b/", "http://x:8o/", "http://x#f",
           "http://[::1/", "http://[::g]/", "http://a%zz/", "http://\x7f/", "http://\xc3\xa9/",
       }) {
    ExpectRefused(std::string("GET ") + target + " HTTP/1.1\r\nHost: x\r\n\r\n");
  }
  // The absolute form does not stand in for a missing Host in HTTP/1.1.
  ExpectRefused("GET http://example.com/ HTTP/1.1\r\n\r\n");
  // Nor does it excuse a bad one.
  ExpectRefused("GET http://example.com/ HTTP/1.1\r\nHost: a b\r\n\r\n");
}

TEST(ParseRequestHead, KeepsParsingTransferEncodingWithContentLength) {
  // The server refuses any body (413, then close), so the head parses.
  ParseResult r = ParseRequestHead(
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 8192);
  ASSERT_EQ(r.kind, Kind::kComplete) << r.reason;
  EXPECT_TRUE(r.head.HasBody());
  r = ParseRequestHead(
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n", 8192);
  ASSERT_EQ(r.kind, Kind::kComplete) << r.reason;
  EXPECT_TRUE(r.head.HasBody());
}

}  // namespace
}  // namespace taskrt::http
