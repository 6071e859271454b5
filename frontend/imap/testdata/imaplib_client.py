# A real-client smoke test: Python's imaplib (the base of offlineimap and
# many scripts) runs a typical synchronisation against the server.
# Usage: imaplib_client.py HOST PORT USER PASSWORD
import imaplib, sys, time

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
m = imaplib.IMAP4(host, port)
m.login(user, password)
typ, caps = m.capability()
assert b"IDLE" in caps[0] and b"UIDPLUS" in caps[0], caps
typ, boxes = m.list()
assert typ == "OK" and any(b'"INBOX"' in b or b" INBOX" in b for b in boxes), boxes
typ, data = m.select("INBOX")
assert typ == "OK" and data[0] == b"1", data
msg = b"From: py@example.test\r\nSubject: from imaplib\r\n\r\nbody\r\n"
typ, data = m.append("INBOX", r"(\Seen)", imaplib.Time2Internaldate(time.time()), msg)
assert typ == "OK" and b"APPENDUID" in data[0], data
typ, data = m.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT MESSAGE-ID)])")
assert typ == "OK" and len([d for d in data if isinstance(d, tuple)]) == 2, data
typ, data = m.uid("SEARCH", None, "SUBJECT", '"from imaplib"')
assert typ == "OK" and data[0] == b"2", data
typ, data = m.uid("FETCH", "2", "(RFC822)")
assert typ == "OK" and data[0][1] == msg, data
typ, data = m.uid("STORE", "1", "+FLAGS.SILENT", r"(\Deleted)")
assert typ == "OK", data
typ, data = m.expunge()
assert typ == "OK" and data[0] == b"1", data
typ, data = m.uid("COPY", "2", "Archive")
assert typ == "OK", data
typ, data = m.status("Archive", "(MESSAGES UIDNEXT)")
assert typ == "OK" and b"MESSAGES 1" in data[0], data
m.close()
m.logout()
print("ok")
