#include "tools/http_front/http_parser.h"

#include <string>

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
           "GET x HTTP/1.1\r\nHost: x\r\n\r\n",           // not origin form
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

}  // namespace
}  // namespace taskrt::http
