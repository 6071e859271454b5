package backend

// Hostile and malformed input through the gRPC API (DESIGN rule 9): each
// request gets a specific gRPC code and changes nothing.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// Limits of the bad-input environment.
const (
	badMaxMessage    = 4096
	badMaxRecipients = 5
)

func newBadEnv(t *testing.T) *env {
	return newEnv(t, 1, func(cfg *Config) {
		cfg.MaxMessageSize = badMaxMessage
		cfg.MaxRecipients = badMaxRecipients
	})
}

// sendAppend sends raw Append requests and returns the outcome.
func sendAppend(ctx context.Context, c mailboxv1.MailboxClient, reqs ...*mailboxv1.AppendRequest) (*mailboxv1.AppendResponse, error) {
	st, err := c.Append(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range reqs {
		if err := st.Send(r); err != nil {
			break // the server ended the call; CloseAndRecv has the status
		}
	}
	return st.CloseAndRecv()
}

// sendDeliver sends raw Deliver requests and returns the outcome.
func sendDeliver(ctx context.Context, c mailboxv1.MailboxClient, reqs ...*mailboxv1.DeliverRequest) (*mailboxv1.DeliverResponse, error) {
	st, err := c.Deliver(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range reqs {
		if err := st.Send(r); err != nil {
			break
		}
	}
	return st.CloseAndRecv()
}

func appendHeader(h *mailboxv1.AppendHeader) *mailboxv1.AppendRequest {
	return &mailboxv1.AppendRequest{Part: &mailboxv1.AppendRequest_Header{Header: h}}
}
func appendChunk(b []byte) *mailboxv1.AppendRequest {
	return &mailboxv1.AppendRequest{Part: &mailboxv1.AppendRequest_Chunk{Chunk: b}}
}
func deliverHeader(h *mailboxv1.DeliverHeader) *mailboxv1.DeliverRequest {
	return &mailboxv1.DeliverRequest{Part: &mailboxv1.DeliverRequest_Header{Header: h}}
}
func deliverChunk(b []byte) *mailboxv1.DeliverRequest {
	return &mailboxv1.DeliverRequest{Part: &mailboxv1.DeliverRequest_Chunk{Chunk: b}}
}

// drain reads a server stream to its end and returns its error.
func drain[T any](st interface{ Recv() (T, error) }, err error) error {
	if err != nil {
		return err
	}
	for {
		if _, err := st.Recv(); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// idCalls makes one request of every RPC that addresses a mailbox by id,
// for account with ctx, and returns each call's error by RPC name.
func idCalls(ctx context.Context, c mailboxv1.MailboxClient, account string, id int64) map[string]error {
	one := uidSet(1, 1)
	out := map[string]error{}
	out["Changes"] = drain(c.Changes(ctx, &mailboxv1.ChangesRequest{AccountId: account, MailboxId: id}))
	out["Fetch"] = drain(c.Fetch(ctx, &mailboxv1.FetchRequest{AccountId: account, MailboxId: id, Envelope: true}))
	out["GetBody"] = drain(c.GetBody(ctx, &mailboxv1.GetBodyRequest{AccountId: account, MailboxId: id, Uid: 1, SetSeen: true}))
	out["GetBodies"] = drain(c.GetBodies(ctx, &mailboxv1.GetBodiesRequest{AccountId: account, MailboxId: id, Uids: []uint32{1}}))
	_, out["StoreFlags"] = c.StoreFlags(ctx, &mailboxv1.StoreFlagsRequest{AccountId: account, MailboxId: id, Uids: one,
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: fDeleted}})
	_, out["Copy"] = c.Copy(ctx, &mailboxv1.CopyRequest{AccountId: account, MailboxId: id, Uids: one, DestName: "Archive"})
	_, out["Move"] = c.Move(ctx, &mailboxv1.MoveRequest{AccountId: account, MailboxId: id, Uids: one, DestName: "Trash"})
	_, out["Expunge"] = c.Expunge(ctx, &mailboxv1.ExpungeRequest{AccountId: account, MailboxId: id})
	_, out["Search"] = c.Search(ctx, &mailboxv1.SearchRequest{AccountId: account, MailboxId: id})
	return out
}

// everyCall makes one request of every account-scoped RPC (Deliver names
// many accounts and Watch is tested elsewhere) for account with ctx: the
// idCalls against mailbox id, and changes by name to mailboxes every
// account has.
func everyCall(ctx context.Context, c mailboxv1.MailboxClient, account string, id int64) map[string]error {
	out := idCalls(ctx, c, account, id)
	_, out["ListMailboxes"] = c.ListMailboxes(ctx, &mailboxv1.ListMailboxesRequest{AccountId: account})
	_, out["CreateMailbox"] = c.CreateMailbox(ctx, &mailboxv1.CreateMailboxRequest{AccountId: account, Name: "Fresh"})
	_, out["DeleteMailbox"] = c.DeleteMailbox(ctx, &mailboxv1.DeleteMailboxRequest{AccountId: account, Name: "Junk"})
	_, out["RenameMailbox"] = c.RenameMailbox(ctx, &mailboxv1.RenameMailboxRequest{AccountId: account, OldName: "Drafts", NewName: "Drafts2"})
	_, out["SetSubscribed"] = c.SetSubscribed(ctx, &mailboxv1.SetSubscribedRequest{AccountId: account, Name: "Junk", Subscribed: false})
	_, out["GetStatus"] = c.GetStatus(ctx, &mailboxv1.GetStatusRequest{AccountId: account, Name: "INBOX"})
	_, out["Select"] = c.Select(ctx, &mailboxv1.SelectRequest{AccountId: account, Name: "INBOX"})
	out["Maildrop"] = drain(c.Maildrop(ctx, &mailboxv1.MaildropRequest{AccountId: account, Name: "INBOX"}))
	msg := testMessage("intruder", "x")
	_, out["Append"] = sendAppend(ctx, c, appendHeader(&mailboxv1.AppendHeader{AccountId: account, MailboxName: "INBOX", Size: int64(len(msg))}), appendChunk(msg))
	_, out["GetQuota"] = c.GetQuota(ctx, &mailboxv1.GetQuotaRequest{AccountId: account})
	return out
}

func TestWrongAndEmptyAccount(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const victim = "victim"
	mustDeliver(t, c, testMessage("private", "secret"), victim)
	id := selectBox(t, c, victim, "INBOX").Status.MailboxId
	before := snapshot(t, c, victim)

	// The caller is authenticated as someone else.
	ctx := metadata.AppendToOutgoingContext(ctxT(t), AccountHeader, "attacker")
	res := everyCall(ctx, c, victim, id)
	if len(res) != 19 {
		t.Fatalf("%d calls", len(res))
	}
	for name, err := range res {
		wantCode(t, name+" for another account", err, codes.PermissionDenied)
	}
	unchanged(t, c, victim, before, "requests for another account")
	// An empty account id.
	for name, err := range everyCall(ctxT(t), c, "", id) {
		wantCode(t, name+" with an empty account", err, codes.InvalidArgument)
	}
	// An empty account id that also differs from the caller's.
	for name, err := range everyCall(ctx, c, "", id) {
		if code := status.Code(err); code != codes.InvalidArgument && code != codes.PermissionDenied {
			t.Fatalf("%s with an empty account for another caller: %v", name, err)
		}
	}
	unchanged(t, c, victim, before, "requests with an empty account")
	// Another account's mailbox id: as if it did not exist.
	for name, err := range idCalls(ctxT(t), c, "nosy", id) {
		wantCode(t, name+" on another account's mailbox id", err, codes.NotFound)
	}
	unchanged(t, c, victim, before, "requests on another account's mailbox id")

	// The header naming the same account is fine.
	own := metadata.AppendToOutgoingContext(ctxT(t), AccountHeader, victim)
	if _, err := c.ListMailboxes(own, &mailboxv1.ListMailboxesRequest{AccountId: victim}); err != nil {
		t.Fatalf("list with the matching header: %v", err)
	}
	if err := drain(c.Fetch(own, &mailboxv1.FetchRequest{AccountId: victim, MailboxId: id})); err != nil {
		t.Fatalf("fetch with the matching header: %v", err)
	}
	msg := testMessage("own", "x")
	if _, err := sendAppend(own, c, appendHeader(&mailboxv1.AppendHeader{AccountId: victim, Size: int64(len(msg))}), appendChunk(msg)); err != nil {
		t.Fatalf("append with the matching header: %v", err)
	}
}

func TestUnknownMailboxID(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "lost"
	mustDeliver(t, c, testMessage("m", "x"), a)
	id := selectBox(t, c, a, "INBOX").Status.MailboxId
	before := snapshot(t, c, a)
	for _, bad := range []int64{0, -1, id + 1000, 1 << 40} {
		for name, err := range idCalls(ctxT(t), c, a, bad) {
			wantCode(t, fmt.Sprintf("%s on mailbox id %d", name, bad), err, codes.NotFound)
		}
	}
	// A missing UID in an existing mailbox: GetBody says NotFound; the
	// set-based calls simply match nothing.
	_, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: a, MailboxId: id, Uid: 2})
	wantCode(t, "body of a missing uid", err, codes.NotFound)
	unchanged(t, c, a, before, "requests on unknown mailbox ids")
}

func TestUnauthenticated(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "guarded"
	mustDeliver(t, c, testMessage("m", "x"), a)
	id := selectBox(t, c, a, "INBOX").Status.MailboxId
	before := snapshot(t, c, a)
	for _, token := range []string{"", "wrong-token", testToken + "x"} {
		bad := e.clientWith(0, token)
		for name, err := range everyCall(ctxT(t), bad, a, id) {
			wantCode(t, fmt.Sprintf("%s with token %q", name, token), err, codes.Unauthenticated)
		}
		msg := testMessage("spam", "x")
		_, err := sendDeliver(ctxT(t), bad, deliverHeader(&mailboxv1.DeliverHeader{Recipients: []*mailboxv1.Recipient{rcpt(a)}, Size: int64(len(msg))}), deliverChunk(msg))
		wantCode(t, fmt.Sprintf("Deliver with token %q", token), err, codes.Unauthenticated)
	}
	unchanged(t, c, a, before, "unauthenticated requests")
}

// rawCodec sends and receives already-encoded messages, so that a test
// can send what a Go client refuses to marshal.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// Mailbox names that are not UTF-8 cannot be sent by a conforming client:
// proto3 strings are UTF-8, so grpc-go refuses to marshal them, and a raw
// request carrying them is refused by the server's decoder (INTERNAL, before
// any handler runs; the backend's own check answers INVALID_ARGUMENT for
// any that got through). Either way nothing changes.
func TestInvalidUTF8Names(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "utf8"
	mustDeliver(t, c, testMessage("m", "x"), a)
	before := snapshot(t, c, a)
	cc, err := grpc.NewClient(e.addrs[0], grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(tokenCreds{testToken}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	str := func(b []byte, field protowire.Number, v string) []byte {
		return protowire.AppendString(protowire.AppendTag(b, field, protowire.BytesType), v)
	}
	for _, bad := range []string{"bad\xff\xfename", "K\xc3", "a/\xc0\xaf/b"} {
		_, err := c.CreateMailbox(ctxT(t), &mailboxv1.CreateMailboxRequest{AccountId: a, Name: bad})
		if err == nil {
			t.Fatalf("client sent invalid UTF-8 %q", bad)
		}
		for method, req := range map[string][]byte{
			"CreateMailbox": str(str(nil, 1, a), 2, bad),
			"DeleteMailbox": str(str(nil, 1, a), 2, bad),
			"Select":        str(str(nil, 1, a), 2, bad),
			"GetStatus":     str(str(nil, 1, a), 2, bad),
			"SetSubscribed": append(str(str(nil, 1, a), 2, bad), 0x18, 1),
			"RenameMailbox": str(str(str(nil, 1, a), 2, "INBOX"), 3, bad),
			"RenameFrom":    str(str(str(nil, 1, a), 2, bad), 3, "New"),
		} {
			name := method
			if method == "RenameFrom" {
				name = "RenameMailbox"
			}
			var reply []byte
			err := cc.Invoke(ctxT(t), "/mailcluster.mailbox.v1.Mailbox/"+name, &req, &reply, grpc.ForceCodec(rawCodec{}))
			if code := status.Code(err); code != codes.InvalidArgument && code != codes.Internal {
				t.Fatalf("raw %s with %q: %v", method, bad, err)
			}
		}
	}
	unchanged(t, c, a, before, "requests with invalid UTF-8 names")
}

// badNames are mailbox names every call must refuse.
func badNames() map[string]string {
	return map[string]string{
		"empty":            "",
		"too long":         strings.Repeat("a", 513),
		"too long (UTF-8)": strings.Repeat("ä", 257),
		"too deep":         strings.Repeat("a/", 32) + "a",
		"dot":              ".",
		"dotdot":           "..",
		"dot component":    "a/./b",
		"dotdot component": "a/../b",
		"trailing dotdot":  "a/..",
		"leading slash":    "/a",
		"trailing slash":   "a/",
		"double slash":     "a//b",
		"only slash":       "/",
		"star":             "a*",
		"percent":          "a%b",
		"NUL":              "a\x00b",
		"tab":              "a\tb",
		"newline":          "a\nb",
		"CR":               "a\rb",
		"DEL":              "a\x7fb",
		"C1 control":       "a\u0085b",
	}
}

func TestBadMailboxNames(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "namer"
	mustDeliver(t, c, testMessage("m", "x"), a)
	create(t, c, a, "Good")
	id := selectBox(t, c, a, "INBOX").Status.MailboxId
	before := snapshot(t, c, a)
	for what, n := range badNames() {
		inv := func(call string, err error) {
			t.Helper()
			wantCode(t, fmt.Sprintf("%s %s %q", call, what, n), err, codes.InvalidArgument)
		}
		_, err := c.CreateMailbox(ctxT(t), &mailboxv1.CreateMailboxRequest{AccountId: a, Name: n})
		inv("create", err)
		_, err = c.DeleteMailbox(ctxT(t), &mailboxv1.DeleteMailboxRequest{AccountId: a, Name: n})
		inv("delete", err)
		_, err = c.RenameMailbox(ctxT(t), &mailboxv1.RenameMailboxRequest{AccountId: a, OldName: "Good", NewName: n})
		inv("rename to", err)
		_, err = c.RenameMailbox(ctxT(t), &mailboxv1.RenameMailboxRequest{AccountId: a, OldName: n, NewName: "Other"})
		inv("rename from", err)
		_, err = c.Select(ctxT(t), &mailboxv1.SelectRequest{AccountId: a, Name: n})
		inv("select", err)
		_, err = c.GetStatus(ctxT(t), &mailboxv1.GetStatusRequest{AccountId: a, Name: n})
		inv("status", err)
		_, err = c.SetSubscribed(ctxT(t), &mailboxv1.SetSubscribedRequest{AccountId: a, Name: n, Subscribed: true})
		inv("subscribe", err)
		_, err = c.Copy(ctxT(t), &mailboxv1.CopyRequest{AccountId: a, MailboxId: id, Uids: uidSet(1, 1), DestName: n})
		inv("copy to", err)
		_, err = c.Move(ctxT(t), &mailboxv1.MoveRequest{AccountId: a, MailboxId: id, Uids: uidSet(1, 1), DestName: n})
		inv("move to", err)
		if n != "" { // an empty name means INBOX for append and deliver
			_, err = appendMsg(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: n}, testMessage("x", "y"))
			inv("append to", err)
			resp, err := deliver(t, c, testMessage("d", "d"), &mailboxv1.Recipient{AccountId: a, MailboxName: n}, rcpt("namer-friend"))
			if err != nil || resp.Results[0].Status != mailboxv1.DeliveryStatus_DELIVERY_STATUS_REJECTED ||
				resp.Results[1].Status != mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK {
				t.Fatalf("deliver to %s %q: %v %v", what, n, resp, err)
			}
		}
	}
	unchanged(t, c, a, before, "requests with invalid mailbox names")
	// Patterns are not names: a long or odd pattern lists nothing and
	// fails nothing.
	if got := listNames(t, c, a, "a//b", "/", "*/../*"); got != "" {
		t.Fatalf("odd patterns listed %s", got)
	}
	_, err := c.ListMailboxes(ctxT(t), &mailboxv1.ListMailboxesRequest{AccountId: a, Patterns: []string{strings.Repeat("*", 513)}})
	wantCode(t, "list with a too long pattern", err, codes.InvalidArgument)
	_, err = c.ListMailboxes(ctxT(t), &mailboxv1.ListMailboxesRequest{AccountId: a, Patterns: make([]string, 101)})
	wantCode(t, "list with 101 patterns", err, codes.InvalidArgument)
	// At the limits: 512 bytes and 32 levels are fine.
	create(t, c, a, strings.Repeat("b", 512))
	create(t, c, a, strings.Repeat("c/", 31)+"c")
	create(t, c, a, "Ünïcödé/日本語/with space/and.dots/...x")
}

func TestBadUIDSets(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "uidbad"
	id := fillInbox(t, c, a, 3)
	before := snapshot(t, c, a)
	many := &mailboxv1.UIDSet{}
	for i := uint32(0); i < 10001; i++ {
		many.Ranges = append(many.Ranges, &mailboxv1.UIDRange{Start: 2*i + 1, End: 2*i + 1})
	}
	for what, set := range map[string]*mailboxv1.UIDSet{
		"UID 0":        uidSet(0, 0),
		"UID 0:3":      uidSet(0, 3),
		"0 after good": uidSet(1, 2, 0, 5),
		"10001 ranges": many,
	} {
		inv := func(call string, err error) {
			t.Helper()
			wantCode(t, call+" "+what, err, codes.InvalidArgument)
		}
		inv("fetch", drain(c.Fetch(ctxT(t), &mailboxv1.FetchRequest{AccountId: a, MailboxId: id, Uids: set})))
		_, err := c.StoreFlags(ctxT(t), &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: set,
			Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: fDeleted}})
		inv("store", err)
		_, err = c.Copy(ctxT(t), &mailboxv1.CopyRequest{AccountId: a, MailboxId: id, Uids: set, DestName: "Archive"})
		inv("copy", err)
		_, err = c.Move(ctxT(t), &mailboxv1.MoveRequest{AccountId: a, MailboxId: id, Uids: set, DestName: "Archive"})
		inv("move", err)
		_, err = c.Expunge(ctxT(t), &mailboxv1.ExpungeRequest{AccountId: a, MailboxId: id, Uids: set})
		inv("expunge", err)
		_, err = c.Search(ctxT(t), &mailboxv1.SearchRequest{AccountId: a, MailboxId: id, Criteria: kUID(set)})
		inv("search", err)
		inv("changes", drain(c.Changes(ctxT(t), &mailboxv1.ChangesRequest{AccountId: a, MailboxId: id, KnownUids: set})))
	}
	unchanged(t, c, a, before, "requests with invalid UID sets")
	// Exactly MaxUIDRanges ranges are fine.
	many.Ranges = many.Ranges[:10000]
	ms, err := fetchSet(t, c, &mailboxv1.FetchRequest{AccountId: a, MailboxId: id, Uids: many})
	if err != nil || fmtUIDs(uidsOf(ms)) != "[1 3]" {
		t.Fatalf("fetch with 10000 ranges: %v %v", uidsOf(ms), err)
	}
	// A store with a bad mode or bad keywords.
	for what, r := range map[string]*mailboxv1.StoreFlagsRequest{
		"unknown mode":     {Mode: 7, Flags: &mailboxv1.Flags{System: fSeen}},
		"empty keyword":    {Flags: &mailboxv1.Flags{Keywords: []string{""}}},
		"keyword space":    {Flags: &mailboxv1.Flags{Keywords: []string{"two words"}}},
		"keyword paren":    {Flags: &mailboxv1.Flags{Keywords: []string{"a(b"}}},
		"keyword bslash":   {Flags: &mailboxv1.Flags{Keywords: []string{"\\Seen"}}},
		"keyword 8-bit":    {Flags: &mailboxv1.Flags{Keywords: []string{"Grün"}}},
		"keyword too long": {Flags: &mailboxv1.Flags{Keywords: []string{strings.Repeat("k", 129)}}},
		"65 keywords":      {Flags: &mailboxv1.Flags{Keywords: manyKeywords(65)}},
	} {
		r.AccountId, r.MailboxId, r.Uids = a, id, uidSet(1, 0)
		_, err := c.StoreFlags(ctxT(t), r)
		wantCode(t, "store "+what, err, codes.InvalidArgument)
	}
	// 64 keywords in one store are fine.
	if _, err := c.StoreFlags(ctxT(t), &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: uidSet(1, 1),
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{Keywords: manyKeywords(64)}}); err != nil {
		t.Fatalf("store 64 keywords: %v", err)
	}
	before = snapshot(t, c, a)
	// Bad GetBody ranges and parts.
	_, _, err = body(t, c, &mailboxv1.GetBodyRequest{AccountId: a, MailboxId: id, Uid: 1, Offset: -1})
	wantCode(t, "body with a negative offset", err, codes.InvalidArgument)
	_, _, err = body(t, c, &mailboxv1.GetBodyRequest{AccountId: a, MailboxId: id, Uid: 1, Length: -1})
	wantCode(t, "body with a negative length", err, codes.InvalidArgument)
	_, _, err = body(t, c, &mailboxv1.GetBodyRequest{AccountId: a, MailboxId: id, Uid: 1, Part: []uint32{0}})
	wantCode(t, "body part 0", err, codes.NotFound)
	unchanged(t, c, a, before, "bad stores and body requests")
}

func manyKeywords(n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("K%d", i))
	}
	return out
}

func TestBadSearch(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "searchbad"
	id := fillInbox(t, c, a, 2)
	search := func(k *sk) (*mailboxv1.SearchResponse, error) {
		return c.Search(ctxT(t), &mailboxv1.SearchRequest{AccountId: a, MailboxId: id, Criteria: k})
	}
	chain := func(depth int) *sk {
		k := kAll()
		for i := 1; i < depth; i++ {
			k = kNot(k)
		}
		return k
	}
	wide := func(n int) *sk {
		k := kAnd()
		for i := 1; i < n; i++ {
			k.Children = append(k.Children, kAll())
		}
		return k
	}
	// At the default limits (depth 32, 1000 keys) the search runs.
	if r, err := search(chain(32)); err != nil || len(r.Uids) != 0 { // 31 NOTs of ALL
		t.Fatalf("depth 32: %v %v", r, err)
	}
	if r, err := search(wide(1000)); err != nil || fmtUIDs(r.Uids) != "[1 2]" {
		t.Fatalf("1000 keys: %v %v", r, err)
	}
	for what, k := range map[string]*sk{
		"depth 33":              chain(33),
		"1001 keys":             wide(1001),
		"NOT with two children": {Op: mailboxv1.SearchKey_OP_NOT, Children: []*sk{kAll(), kAll()}},
		"NOT without children":  {Op: mailboxv1.SearchKey_OP_NOT},
		"AND without children":  kAnd(),
		"OR without children":   kOr(),
		"nested empty AND":      kOr(kAll(), kAnd()),
		"HEADER empty field":    kHeader("", "x"),
		"HEADER empty both":     kHeader("", ""),
		"HEADER field colon":    kHeader("Subject:", "x"),
		"HEADER field space":    kHeader("Sub ject", "x"),
		"HEADER field newline":  kHeader("Subject\nX", "x"),
		"FLAG without flag":     {Op: mailboxv1.SearchKey_OP_FLAG},
		"FLAG with both":        {Op: mailboxv1.SearchKey_OP_FLAG, Number: uint64(fSeen), Text: "K"},
		"FLAG unknown bit":      kFlag(64),
		"FLAG recent":           kFlag(uint32(mailboxv1.Flag_FLAG_RECENT)),
		"NO_FLAG without flag":  {Op: mailboxv1.SearchKey_OP_NO_FLAG},
		"UID without set":       {Op: mailboxv1.SearchKey_OP_UID},
		"ALL with a child":      {Op: mailboxv1.SearchKey_OP_ALL, Children: []*sk{kAll()}},
		"BODY with a child":     {Op: mailboxv1.SearchKey_OP_BODY, Text: "x", Children: []*sk{kAll()}},
		"unknown op":            {Op: 99},
		"text too long":         kBody(strings.Repeat("x", 1001)),
	} {
		_, err := search(k)
		wantCode(t, "search "+what, err, codes.InvalidArgument)
	}
}

func TestBadAppend(t *testing.T) {
	e := newBadEnv(t)
	c := e.client(0)
	const a = "appendbad"
	mustDeliver(t, c, testMessage("m", "x"), a)
	before := snapshot(t, c, a)
	msg := testMessage("fits", "x")
	big := append(testMessage("big", ""), []byte(strings.Repeat("y", badMaxMessage))...)
	exact := append(testMessage("exact", ""), []byte(strings.Repeat("z", badMaxMessage-len(testMessage("exact", ""))))...)
	if len(exact) != badMaxMessage || len(big) <= badMaxMessage {
		t.Fatal("test sizes")
	}
	h := func(size int64) *mailboxv1.AppendRequest {
		return appendHeader(&mailboxv1.AppendHeader{AccountId: a, MailboxName: "INBOX", Size: size})
	}
	for _, tc := range []struct {
		what   string
		reqs   []*mailboxv1.AppendRequest
		code   codes.Code
		reason string
	}{
		{"announced too big", []*mailboxv1.AppendRequest{h(int64(len(big))), appendChunk(big)}, codes.ResourceExhausted, ReasonTooBig},
		{"announced too big, no body", []*mailboxv1.AppendRequest{h(1 << 40)}, codes.ResourceExhausted, ReasonTooBig},
		{"body bigger than announced and the limit", []*mailboxv1.AppendRequest{h(100), appendChunk(big)}, codes.ResourceExhausted, ReasonTooBig},
		{"too big in small chunks", []*mailboxv1.AppendRequest{h(int64(len(big))), appendChunk(big[:2000]), appendChunk(big[2000:4000]), appendChunk(big[4000:])}, codes.ResourceExhausted, ReasonTooBig},
		{"size one more", []*mailboxv1.AppendRequest{h(int64(len(msg) + 1)), appendChunk(msg)}, codes.InvalidArgument, ""},
		{"size one less", []*mailboxv1.AppendRequest{h(int64(len(msg) - 1)), appendChunk(msg)}, codes.InvalidArgument, ""},
		{"negative size", []*mailboxv1.AppendRequest{h(-5), appendChunk(msg)}, codes.InvalidArgument, ""},
		{"no header", []*mailboxv1.AppendRequest{appendChunk(msg)}, codes.InvalidArgument, ""},
		{"nothing at all", nil, codes.InvalidArgument, ""},
		{"two headers", []*mailboxv1.AppendRequest{h(int64(len(msg))), h(int64(len(msg))), appendChunk(msg)}, codes.InvalidArgument, ""},
		{"missing mailbox", []*mailboxv1.AppendRequest{appendHeader(&mailboxv1.AppendHeader{AccountId: a, MailboxName: "Nope", Size: int64(len(msg))}), appendChunk(msg)}, codes.NotFound, ""},
		{"bad keyword", []*mailboxv1.AppendRequest{appendHeader(&mailboxv1.AppendHeader{AccountId: a, MailboxName: "INBOX", Size: int64(len(msg)),
			Flags: &mailboxv1.Flags{Keywords: []string{"no spaces"}}}), appendChunk(msg)}, codes.InvalidArgument, ""},
	} {
		_, err := sendAppend(ctxT(t), c, tc.reqs...)
		if tc.reason != "" {
			wantReason(t, "append "+tc.what, err, tc.reason)
		} else {
			wantCode(t, "append "+tc.what, err, tc.code)
		}
		unchanged(t, c, a, before, "append "+tc.what)
	}
	// Exactly the limit is accepted, and the body is kept byte for byte.
	r := mustAppend(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "INBOX"}, exact)
	if b, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: a, MailboxId: r.MailboxId, Uid: r.Uid}); err != nil || string(b) != string(exact) {
		t.Fatalf("exact-size body: %d bytes %v", len(b), err)
	}
}

func TestBadDeliver(t *testing.T) {
	e := newBadEnv(t)
	c := e.client(0)
	const a, b = "deliverbad", "deliverbad2"
	mustDeliver(t, c, testMessage("m", "x"), a, b)
	beforeA, beforeB := snapshot(t, c, a), snapshot(t, c, b)
	msg := testMessage("d", "x")
	big := append(testMessage("big", ""), []byte(strings.Repeat("y", badMaxMessage))...)
	rs := func(n int) []*mailboxv1.Recipient {
		var out []*mailboxv1.Recipient
		for i := 0; i < n; i++ {
			out = append(out, rcpt([]string{a, b}[i%2]))
		}
		return out
	}
	h := func(size int64, r []*mailboxv1.Recipient) *mailboxv1.DeliverRequest {
		return deliverHeader(&mailboxv1.DeliverHeader{Recipients: r, Size: size, TraceId: "bad"})
	}
	for _, tc := range []struct {
		what   string
		reqs   []*mailboxv1.DeliverRequest
		code   codes.Code
		reason string
	}{
		{"announced too big", []*mailboxv1.DeliverRequest{h(int64(len(big)), rs(2)), deliverChunk(big)}, codes.ResourceExhausted, ReasonTooBig},
		{"unannounced too big", []*mailboxv1.DeliverRequest{h(0, rs(2)), deliverChunk(big[:3000]), deliverChunk(big[3000:])}, codes.ResourceExhausted, ReasonTooBig},
		{"size mismatch", []*mailboxv1.DeliverRequest{h(int64(len(msg)+1), rs(2)), deliverChunk(msg)}, codes.InvalidArgument, ""},
		{"no header", []*mailboxv1.DeliverRequest{deliverChunk(msg)}, codes.InvalidArgument, ""},
		{"nothing at all", nil, codes.InvalidArgument, ""},
		{"two headers", []*mailboxv1.DeliverRequest{h(0, rs(2)), h(0, rs(2)), deliverChunk(msg)}, codes.InvalidArgument, ""},
		{"no recipients", []*mailboxv1.DeliverRequest{h(0, nil), deliverChunk(msg)}, codes.InvalidArgument, ""},
		{"too many recipients", []*mailboxv1.DeliverRequest{h(0, rs(badMaxRecipients+1)), deliverChunk(msg)}, codes.InvalidArgument, ""},
	} {
		_, err := sendDeliver(ctxT(t), c, tc.reqs...)
		if tc.reason != "" {
			wantReason(t, "deliver "+tc.what, err, tc.reason)
		} else {
			wantCode(t, "deliver "+tc.what, err, tc.code)
		}
		unchanged(t, c, a, beforeA, "deliver "+tc.what)
		unchanged(t, c, b, beforeB, "deliver "+tc.what)
	}
	// Bad recipients get their own status; the others are delivered.
	resp, err := deliver(t, c, msg,
		&mailboxv1.Recipient{AccountId: a, MailboxName: "Nope"},
		&mailboxv1.Recipient{AccountId: ""},
		&mailboxv1.Recipient{AccountId: a, MailboxName: "a/../b"},
		&mailboxv1.Recipient{AccountId: a, Flags: &mailboxv1.Flags{Keywords: []string{"bad keyword"}}},
		&mailboxv1.Recipient{AccountId: b})
	if err != nil {
		t.Fatal(err)
	}
	want := []mailboxv1.DeliveryStatus{mailboxv1.DeliveryStatus_DELIVERY_STATUS_NO_MAILBOX, mailboxv1.DeliveryStatus_DELIVERY_STATUS_REJECTED,
		mailboxv1.DeliveryStatus_DELIVERY_STATUS_REJECTED, mailboxv1.DeliveryStatus_DELIVERY_STATUS_REJECTED, mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK}
	if len(resp.Results) != len(want) {
		t.Fatalf("results %v", resp.Results)
	}
	for i, w := range want {
		if resp.Results[i].Status != w || (w != mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK) != (resp.Results[i].Uid == 0) {
			t.Fatalf("recipient %d: %v, want %v", i, resp.Results[i], w)
		}
	}
	unchanged(t, c, a, beforeA, "deliver to bad recipients")
	if st := status1(t, c, b, "INBOX"); st.Messages != 2 {
		t.Fatalf("good recipient: %v", st)
	}
	// The limit of recipients, with the same account several times, is
	// accepted.
	if _, err := deliver(t, c, msg, rs(badMaxRecipients)...); err != nil {
		t.Fatalf("deliver to %d recipients: %v", badMaxRecipients, err)
	}
}

// The mailbox limit counts every mailbox a request would add: the
// superiors CREATE makes, the superiors RENAME makes, and the mailbox that
// renaming INBOX makes.
func TestMailboxLimit(t *testing.T) {
	e := newEnv(t, 1, func(cfg *Config) { cfg.MaxMailboxes = 9 })
	c := e.client(0)
	const a = "hoarder"
	mustDeliver(t, c, testMessage("m", "x"), a) // six default mailboxes
	before := snapshot(t, c, a)
	_, err := c.CreateMailbox(ctxT(t), &mailboxv1.CreateMailboxRequest{AccountId: a, Name: "a/b/c/d"})
	wantCode(t, "create four mailboxes over the limit", err, codes.InvalidArgument)
	unchanged(t, c, a, before, "create over the mailbox limit")
	create(t, c, a, "a/b") // eight
	before = snapshot(t, c, a)
	_, err = c.CreateMailbox(ctxT(t), &mailboxv1.CreateMailboxRequest{AccountId: a, Name: "x/y"})
	wantCode(t, "create two mailboxes, room for one", err, codes.InvalidArgument)
	unchanged(t, c, a, before, "create over the mailbox limit")
	create(t, c, a, "a/b/c") // nine: the limit
	before = snapshot(t, c, a)
	for _, tc := range []struct{ from, to string }{
		{"a/b/c", "q/r"}, // would create q
		{"INBOX", "Old"}, // would create Old
		{"a/b", "s/t/u"}, // would create s and s/t
	} {
		_, err = c.RenameMailbox(ctxT(t), &mailboxv1.RenameMailboxRequest{AccountId: a, OldName: tc.from, NewName: tc.to})
		wantCode(t, "rename "+tc.from+" to "+tc.to+" at the limit", err, codes.InvalidArgument)
	}
	_, err = c.CreateMailbox(ctxT(t), &mailboxv1.CreateMailboxRequest{AccountId: a, Name: "one-more"})
	wantCode(t, "create at the limit", err, codes.InvalidArgument)
	unchanged(t, c, a, before, "requests over the mailbox limit")
	// A rename that adds nothing is fine at the limit; so is a create after
	// a delete.
	if _, err := c.RenameMailbox(ctxT(t), &mailboxv1.RenameMailboxRequest{AccountId: a, OldName: "a/b/c", NewName: "a/c"}); err != nil {
		t.Fatalf("rename within the limit: %v", err)
	}
	if _, err := c.DeleteMailbox(ctxT(t), &mailboxv1.DeleteMailboxRequest{AccountId: a, Name: "Junk"}); err != nil {
		t.Fatal(err)
	}
	create(t, c, a, "Spam")
}

// Odd but acceptable messages are stored byte for byte (but for bare LF line
// endings, which are stored as CRLF), through append and deliver; none is a
// (temporary) server fault.
func TestOddMessages(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "odd"
	for _, tc := range []struct {
		what   string
		m      []byte
		stored []byte // when not m
	}{
		{"empty", []byte{}, nil},
		{"no header", []byte("just some text, no header at all\r\n"), nil},
		{"no header, bare", []byte("x"), nil},
		{"header only", []byte("Subject: only a header\r\n"), nil},
		{"blank lines", []byte("\r\n\r\n"), nil},
		{"NUL bytes", []byte("Subject: a\x00b\r\n\r\nnul\x00body"), nil},
		{"bare LF", []byte("Subject: lf\n\nbody\n"), []byte("Subject: lf\r\n\r\nbody\r\n")},
		{"8-bit header", []byte("Subject: Gr\xfc\xdfe\r\nFrom: \xff\r\n\r\n\xfe"), nil},
	} {
		what, m, stored := tc.what, tc.m, tc.stored
		if stored == nil {
			stored = m
		}
		ap, err := appendMsg(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "INBOX", Size: int64(len(m))}, m)
		if err != nil {
			t.Fatalf("append %s: %v", what, err)
		}
		res, err := deliver(t, c, m, rcpt(a))
		if err != nil || res.Results[0].Status != mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK || res.Size != int64(len(stored)) {
			t.Fatalf("deliver %s: %v %v", what, res, err)
		}
		for _, uid := range []uint32{ap.Uid, res.Results[0].Uid} {
			b, first, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: a, MailboxId: ap.MailboxId, Uid: uid})
			if err != nil || string(b) != string(stored) || first.GetTotalSize() != int64(len(stored)) {
				t.Fatalf("%s: body %q (%v) %v", what, b, first, err)
			}
			ms, err := fetchSet(t, c, &mailboxv1.FetchRequest{AccountId: a, MailboxId: ap.MailboxId, Uids: uidSet(uid, uid),
				Envelope: true, BodyStructure: true, Header: true, InternalDate: true})
			if err != nil || len(ms) != 1 || ms[0].Size != int64(len(stored)) || ms[0].BodyStructure == nil || !strings.HasPrefix(string(stored), string(ms[0].Header)) {
				t.Fatalf("%s: fetch %v %v", what, ms, err)
			}
		}
	}
	if st := status1(t, c, a, "INBOX"); st.Messages != 16 {
		t.Fatalf("INBOX: %v", st)
	}
	sr, err := c.Search(ctxT(t), &mailboxv1.SearchRequest{AccountId: a, MailboxId: selectBox(t, c, a, "INBOX").Status.MailboxId, Criteria: kText("no header at all")})
	if err != nil || fmtUIDs(sr.Uids) != "[3 4]" {
		t.Fatalf("search in a message without header: %v %v", sr, err)
	}
}

// Numbers and times at the edges of their types keep their meaning: a
// MODSEQ or size beyond any real one matches nothing (nothing is
// "newer"), a date beyond any real one is after every message, and an
// append with an impossible internal date is refused.
func TestExtremeNumbers(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "extreme"
	id := fillInbox(t, c, a, 2)
	const huge = math.MaxUint64
	for _, tc := range []struct {
		what string
		key  *sk
		want string
	}{
		{"LARGER 2^63", kNum(mailboxv1.SearchKey_OP_LARGER, 1<<63), "[]"},
		{"LARGER max", kNum(mailboxv1.SearchKey_OP_LARGER, huge), "[]"},
		{"SMALLER max", kNum(mailboxv1.SearchKey_OP_SMALLER, huge), "[1 2]"},
		{"MODSEQ max", kNum(mailboxv1.SearchKey_OP_MODSEQ, huge), "[]"},
		{"SINCE max", &sk{Op: mailboxv1.SearchKey_OP_SINCE, Time: math.MaxInt64}, "[]"},
		{"BEFORE max", &sk{Op: mailboxv1.SearchKey_OP_BEFORE, Time: math.MaxInt64}, "[1 2]"},
		{"SINCE min", &sk{Op: mailboxv1.SearchKey_OP_SINCE, Time: math.MinInt64}, "[1 2]"},
		{"BEFORE min", &sk{Op: mailboxv1.SearchKey_OP_BEFORE, Time: math.MinInt64}, "[]"},
		{"SENTSINCE max", &sk{Op: mailboxv1.SearchKey_OP_SENT_SINCE, Time: math.MaxInt64}, "[]"},
		{"SENTBEFORE max", &sk{Op: mailboxv1.SearchKey_OP_SENT_BEFORE, Time: math.MaxInt64}, "[1 2]"},
		{"SENTSINCE min", &sk{Op: mailboxv1.SearchKey_OP_SENT_SINCE, Time: math.MinInt64}, "[1 2]"},
	} {
		r, err := c.Search(ctxT(t), &mailboxv1.SearchRequest{AccountId: a, MailboxId: id, Criteria: tc.key})
		if err != nil || fmtUIDs(r.Uids) != tc.want {
			t.Errorf("search %s: %v %v, want %s", tc.what, r.GetUids(), err, tc.want)
		}
	}
	ms, err := fetchSet(t, c, &mailboxv1.FetchRequest{AccountId: a, MailboxId: id, ChangedSince: huge})
	if err != nil || len(ms) != 0 {
		t.Errorf("fetch changedsince max: %v %v", uidsOf(ms), err)
	}
	ch, err := changesErr(t, c, &mailboxv1.ChangesRequest{AccountId: a, MailboxId: id, SinceModseq: huge})
	if err != nil || len(ch.changed) != 0 || len(ch.vanished.Ranges) != 0 {
		t.Errorf("changes since max: %+v %v", ch, err)
	}
	// UNCHANGEDSINCE above every MODSEQ (beyond 32 bits, beyond 63 bits):
	// the store happens.
	for i, since := range []uint64{1 << 32, huge} {
		r, err := c.StoreFlags(ctxT(t), &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: uidSet(1, 0), UnchangedSince: since,
			Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: []uint32{fSeen, fFlagged}[i]}})
		if err != nil || len(r.Modified.GetRanges()) != 0 || len(r.Messages) != 2 || r.Messages[0].Flags.System&[]uint32{fSeen, fFlagged}[i] == 0 {
			t.Errorf("store unchangedsince %d: %v %v", since, r, err)
		}
	}
	// Internal dates: the year 9999 is the last that fits.
	before := snapshot(t, c, a)
	for _, d := range []int64{253402300800, 1 << 50, math.MaxInt64} {
		_, err := appendMsg(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "INBOX", InternalDate: d}, testMessage("x", "y"))
		wantCode(t, fmt.Sprintf("append with internal date %d", d), err, codes.InvalidArgument)
	}
	unchanged(t, c, a, before, "appends with impossible internal dates")
	last := int64(253402300799)
	ap := mustAppend(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "INBOX", InternalDate: last}, testMessage("x", "y"))
	if ms, err := fetchSet(t, c, &mailboxv1.FetchRequest{AccountId: a, MailboxId: id, Uids: uidSet(ap.Uid, ap.Uid), InternalDate: true}); err != nil || ms[0].InternalDate != last {
		t.Fatalf("internal date %v %v, want %d", ms, err, last)
	}
}
