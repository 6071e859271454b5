// Package pop3 is the frontend's POP3 service (RFC 1939) with CAPA (RFC
// 2449), STLS (RFC 2595), SASL PLAIN (RFC 5034, RFC 4616), extended response
// codes (RFC 3206) and implicit TLS on port 995 (RFC 8314). It is written by
// hand: a wire codec that does no networking (codec.go, fuzzed) and a state
// machine (session.go) that authenticates through the directory and reads
// and changes the user's INBOX through the backend's gRPC API. It holds no
// mail: only each session's message list and deletion marks.
package pop3
