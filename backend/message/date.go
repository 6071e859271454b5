package message

import (
	"net/mail"
	"strings"
	"time"
)

// parseDate parses a Date header (RFC 5322 §3.3). The common form
// "[Mon, ]2 Jan 2006 15:04[:05] -0700 [(comment)]" is parsed directly, since
// net/mail.ParseDate tries many layouts and costs more than the rest of a
// small message's parse; anything else goes to net/mail.ParseDate. ok is false
// when neither understands the value.
func parseDate(s string) (t time.Time, ok bool) {
	if t, ok := parseDateFast(s); ok {
		return t, true
	}
	t, err := mail.ParseDate(s)
	return t, err == nil
}

var months = [...]string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}

func parseDateFast(s string) (time.Time, bool) {
	p := dateParser{s: s}
	p.space()
	if len(p.s) >= 4 && p.s[3] == ',' {
		p.s = p.s[4:]
		p.space()
	}
	day, ok := p.num(1, 2)
	if !ok || !p.space() || len(p.s) < 3 {
		return time.Time{}, false
	}
	mon := 0
	for i, m := range months {
		if strings.EqualFold(p.s[:3], m) {
			mon = i + 1
		}
	}
	p.s = p.s[3:]
	if mon == 0 || !p.space() {
		return time.Time{}, false
	}
	year, ok := p.num(4, 4)
	if !ok || !p.space() {
		return time.Time{}, false
	}
	hour, ok1 := p.num(2, 2)
	ok2 := p.byte(':')
	minute, ok3 := p.num(2, 2)
	if !ok1 || !ok2 || !ok3 {
		return time.Time{}, false
	}
	sec := 0
	if p.byte(':') {
		if sec, ok = p.num(2, 2); !ok {
			return time.Time{}, false
		}
	}
	if !p.space() || len(p.s) < 5 || (p.s[0] != '+' && p.s[0] != '-') {
		return time.Time{}, false
	}
	sign := 1
	if p.s[0] == '-' {
		sign = -1
	}
	p.s = p.s[1:]
	zone, ok := p.num(4, 4)
	if !ok || hour > 23 || minute > 59 || sec > 59 || zone%100 > 59 {
		return time.Time{}, false
	}
	p.space()
	if rest := p.s; rest != "" && (rest[0] != '(' || rest[len(rest)-1] != ')') {
		return time.Time{}, false
	}
	offset := sign * (zone/100*3600 + zone%100*60)
	t := time.Date(year, time.Month(mon), day, hour, minute, sec, 0, time.FixedZone("", offset))
	if t.Day() != day {
		return time.Time{}, false // 31 Feb and the like
	}
	return t, true
}

type dateParser struct{ s string }

// space skips white space and reports whether there was any.
func (p *dateParser) space() bool {
	n := len(p.s)
	p.s = strings.TrimLeft(p.s, " \t")
	return len(p.s) < n
}

func (p *dateParser) byte(c byte) bool {
	if len(p.s) > 0 && p.s[0] == c {
		p.s = p.s[1:]
		return true
	}
	return false
}

// num reads a decimal number of minDigits to maxDigits digits.
func (p *dateParser) num(minDigits, maxDigits int) (int, bool) {
	n, i := 0, 0
	for i < len(p.s) && i < maxDigits && p.s[i] >= '0' && p.s[i] <= '9' {
		n = n*10 + int(p.s[i]-'0')
		i++
	}
	if i < minDigits || (i < len(p.s) && p.s[i] >= '0' && p.s[i] <= '9') {
		return 0, false
	}
	p.s = p.s[i:]
	return n, true
}
