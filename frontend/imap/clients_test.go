package imap

import (
	"fmt"
	"strings"
	"testing"
)

// Command sequences as the clients people use send them (from their
// protocol logs, reduced to what they send without CONDSTORE, QRESYNC, ID
// and QUOTA, which are not advertised). Every command must end in OK.
var clientScripts = map[string][]string{
	"thunderbird": {
		`1 capability`, `2 login "%s" "secret"`, `3 namespace`,
		`4 list (subscribed) "" "*" return (special-use)`, `5 list "" "INBOX"`, `6 lsub "" "*"`,
		`7 select "INBOX"`, `8 UID fetch 1:* (FLAGS)`,
		`9 UID fetch 1 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])`,
		`10 IDLE`, `11 UID fetch 1 (UID RFC822.SIZE BODY.PEEK[])`, `12 uid store 1 +Flags (\Seen)`,
		`13 STATUS "Sent" (UIDNEXT MESSAGES UNSEEN RECENT)`, `14 uid copy 1 "Archive"`, `15 uid move 1 "Trash"`,
		`16 expunge`, `17 logout`,
	},
	"apple-mail": {
		`1.1 CAPABILITY`, `2.1 LOGIN %s secret`, `3.1 LIST "" ""`, `4.1 LIST "" "*"`, `5.1 LSUB "" "*"`,
		`6.1 SELECT INBOX`, `7.1 UID SEARCH 1:* NOT DELETED`, `8.1 UID FETCH 1:* (FLAGS)`,
		`9.1 UID FETCH 1 (BODYSTRUCTURE BODY.PEEK[HEADER] RFC822.SIZE INTERNALDATE FLAGS)`,
		`10.1 UID FETCH 1 (BODY.PEEK[1]<0.10240>)`, `11.1 UID FETCH 1 (BODY.PEEK[2.MIME] BODY.PEEK[2])`,
		`12.1 IDLE`, `13.1 UID STORE 1 +FLAGS.SILENT (\Seen \Flagged)`, `14.1 NOOP`, `15.1 LOGOUT`,
	},
	"outlook": {
		`A1 CAPABILITY`, `A2 LOGIN %s secret`, `A3 LIST "" "*"`, `A4 SELECT "INBOX"`, `A5 UID FETCH 1:* (UID FLAGS)`,
		`A6 UID FETCH 1 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER])`, `A7 UID FETCH 1 (UID RFC822.SIZE BODY.PEEK[])`,
		`A8 FETCH 1 RFC822.PEEK`, `A9 UID STORE 1 +FLAGS (\Seen)`, `A10 NOOP`, `A11 LOGOUT`,
	},
	"k9": {
		`1 CAPABILITY`, `2 LOGIN "%s" "secret"`, `3 NAMESPACE`, `4 LIST "" "*"`, `5 SELECT "INBOX"`,
		`6 UID SEARCH 1:* NOT DELETED`,
		`7 UID FETCH 1 (UID INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (date subject from content-type to cc bcc reply-to message-id references in-reply-to X-K9mail-Identity Chat-Version)] FLAGS)`,
		`8 UID FETCH 1 (UID BODYSTRUCTURE)`, `9 UID FETCH 1 (UID BODY.PEEK[1]<0.4096>)`, `10 UID STORE 1 +FLAGS.SILENT (\Seen)`,
		`11 IDLE`, `12 LOGOUT`,
	},
	"mutt": {
		`a0000 CAPABILITY`, `a0001 LOGIN "%s" "secret"`, `a0002 LIST "" ""`, `a0003 LSUB "" "*"`, `a0004 SELECT "INBOX"`,
		`a0005 FETCH 1:1 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM SENDER SUBJECT TO CC MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION IN-REPLY-TO REPLY-TO LINES LIST-POST X-LABEL X-ORIGINAL-TO)])`,
		`a0006 UID FETCH 1 BODY.PEEK[]`, `a0007 UID STORE 1 +FLAGS.SILENT (\Seen)`, `a0008 CHECK`, `a0009 EXPUNGE`, `a0010 LOGOUT`,
	},
	"mbsync": {
		`1 CAPABILITY`, `2 LOGIN "%s" "secret"`, `3 LIST "" "*"`, `4 SELECT "INBOX"`, `5 UID FETCH 1:* (UID FLAGS)`,
		`6 UID FETCH 1 (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (X-TUID MESSAGE-ID)])`,
		"7 APPEND \"Archive\" (\\Seen) \"25-Nov-2026 12:00:00 +0000\" {38}\r\nSubject: synced\r\nX-TUID: abc\r\n\r\nbody\r\n",
		`8 UID STORE 1 +FLAGS.SILENT (\Deleted)`, `9 UID EXPUNGE 1`, `10 CLOSE`, `11 LOGOUT`,
	},
}

func TestClientScripts(t *testing.T) {
	st := newStack(t, 1)
	_, addr := st.frontend(nil, 0)
	for name, script := range clientScripts {
		t.Run(name, func(t *testing.T) {
			user := "c-" + strings.ReplaceAll(name, "-", "")
			id := st.user(user)
			deliver(t, st.clients[0], id, []byte(multipartMsg))
			r := dialRaw(t, addr)
			for _, cmd := range script {
				if strings.Contains(cmd, "%s") {
					cmd = fmt.Sprintf(cmd, user)
				}
				tag, rest, _ := strings.Cut(cmd, " ")
				switch {
				case strings.EqualFold(rest, "IDLE"):
					r.send(cmd + "\r\n")
					r.expect("+ ")
					r.send("DONE\r\n")
				case strings.Contains(cmd, "}\r\n"):
					line, lit, _ := strings.Cut(cmd, "\r\n")
					r.send(line + "\r\n")
					r.expect("+ ")
					r.send(lit + "\r\n")
				default:
					r.send(cmd + "\r\n")
				}
				out := r.until(tag)
				last := out[strings.LastIndex(strings.TrimSuffix(out, "\n"), "\n")+1:]
				if !strings.HasPrefix(last, tag+" OK") {
					t.Fatalf("%s: %q", cmd, out)
				}
			}
		})
	}
}
