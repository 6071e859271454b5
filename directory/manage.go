package directory

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/go-ldap/ldap/v3"
	"golang.org/x/crypto/argon2"
)

// Errors of Manager operations.
var (
	ErrNotFound = errors.New("not found")
	ErrInUse    = errors.New("already in use")
)

// oidPasswordModify is the RFC 3062 Password Modify extended operation.
const oidPasswordModify = "1.3.6.1.4.1.4203.1.11.1"

// ManagerConfig configures a Manager: the directory settings (bind as a DN
// that may write below the base DN) and where new entries go.
type ManagerConfig struct {
	Directory Config
	PeopleDN  string `name:"ldap-people-dn" help:"where the admin command creates accounts (empty: ou=people,<ldap-base-dn>)"`
	ListsDN   string `name:"ldap-lists-dn" help:"where the admin command creates distribution lists (empty: ou=lists,<ldap-base-dn>)"`
}

// DefaultManagerConfig returns the defaults.
func DefaultManagerConfig() ManagerConfig { return ManagerConfig{Directory: DefaultConfig()} }

// Validate checks the configuration and fills in defaults.
func (c *ManagerConfig) Validate() error {
	if err := c.Directory.Validate(); err != nil {
		return err
	}
	if c.PeopleDN == "" {
		c.PeopleDN = "ou=people," + c.Directory.BaseDN
	}
	if c.ListsDN == "" {
		c.ListsDN = "ou=lists," + c.Directory.BaseDN
	}
	return nil
}

// Manager changes accounts, aliases and lists in LDAP, for the admin
// command. It writes the OpenLDAP layout (inetOrgPerson +
// inetLocalMailRecipient + mailclusterAccount; groupOfNames +
// inetLocalMailRecipient + mailclusterList), with the configured attribute
// names. Every address written is normalised and checked to be unused by
// any entry first.
type Manager struct {
	cfg ManagerConfig
	d   *Directory // its lookup pool, bound as the admin DN, does the writes too

	pmMu    sync.Mutex
	pmKnown bool // whether the server's Password Modify support is known
	pmOK    bool
}

// NewManager validates cfg and returns a Manager.
func NewManager(cfg ManagerConfig, log *slog.Logger, opts ...Option) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d, err := New(cfg.Directory, log, opts...)
	if err != nil {
		return nil, err
	}
	return &Manager{cfg: cfg, d: d}, nil
}

// Close closes the LDAP connections.
func (m *Manager) Close() error { return m.d.Close() }

// NewUser describes an account to create.
type NewUser struct {
	Address  string   // primary address (required)
	UID      string   // login and RDN; empty: the address's local part
	Name     string   // display name (cn); empty: the UID
	Password string   // empty: none set (the account cannot log in)
	Backend  string   // mailHost; empty: the frontend chooses
	Aliases  []string // further addresses
	Quota    Quota
	Disabled bool
}

// PasswordMethod says how a password is set.
type PasswordMethod string

// Password methods.
const (
	// PasswordAuto uses the extended operation when the server's root DSE
	// lists it, else writes a hash.
	PasswordAuto PasswordMethod = "auto"
	// PasswordExtOp sends the RFC 3062 Password Modify extended operation:
	// the server hashes the password with its own scheme.
	PasswordExtOp PasswordMethod = "extop"
	// PasswordSSHA writes userPassword as {SSHA} (salted SHA-1), which
	// every OpenLDAP and 389-DS verifies.
	PasswordSSHA PasswordMethod = "ssha"
	// PasswordArgon2 writes userPassword as {ARGON2} (argon2id); OpenLDAP
	// needs the argon2 module.
	PasswordArgon2 PasswordMethod = "argon2"
)

// ListInfo describes a distribution list and its direct members.
type ListInfo struct {
	DN      string       `json:"dn"`
	Address string       `json:"address"`
	Name    string       `json:"name,omitempty"`
	Aliases []string     `json:"aliases,omitempty"`
	Members []MemberInfo `json:"members"`
}

// MemberInfo is a direct member of a list.
type MemberInfo struct {
	DN      string `json:"dn"`
	Kind    Kind   `json:"kind"` // Account, List, Forward, or Unknown when the entry is missing
	Address string `json:"address,omitempty"`
}

// find returns the one entry that owns an address, or (without @) the
// account whose login is who or the list whose cn is who. ErrNotFound if
// none.
func (m *Manager) find(ctx context.Context, who string) (*ldap.Entry, error) {
	if strings.Contains(who, "@") {
		a, err := normalize(&m.d.cfg, who)
		if err != nil {
			return nil, err
		}
		entries, err := m.d.search(ctx, m.d.cfg.AddressFilter, a.String(), 0)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if m.d.owns(e, a) {
				return e, nil
			}
		}
		return nil, fmt.Errorf("%w: no entry has the address %s", ErrNotFound, a)
	}
	if !validLogin(who) {
		return nil, fmt.Errorf("%w: %q is not a login", ErrInvalidAddress, who)
	}
	v := ldap.EscapeFilter(who)
	f := "(|(" + m.d.cfg.AttrLogin + "=" + v + ")(&(objectClass=" + ldap.EscapeFilter(m.d.cfg.ListObjectClass) + ")(cn=" + v + ")))"
	entries, err := m.d.search(ctx, f, "", 0)
	if err != nil {
		return nil, err
	}
	switch len(entries) {
	case 0:
		return nil, fmt.Errorf("%w: no account has the login %s and no list is named %s", ErrNotFound, who, who)
	case 1:
		return entries[0], nil
	}
	return nil, fmt.Errorf("%w: %s names both %s and %s: use an address", ErrInUse, who, entries[0].DN, entries[1].DN)
}

func (m *Manager) findAccount(ctx context.Context, who string) (*ldap.Entry, error) {
	e, err := m.find(ctx, who)
	if err == nil && m.d.isList(e) {
		return nil, fmt.Errorf("%w: %s is a list (%s), not an account", ErrNotFound, who, e.DN)
	}
	return e, err
}

func (m *Manager) findList(ctx context.Context, who string) (*ldap.Entry, error) {
	e, err := m.find(ctx, who)
	if err == nil && !m.d.isList(e) {
		return nil, fmt.Errorf("%w: %s is an account (%s), not a list", ErrNotFound, who, e.DN)
	}
	return e, err
}

// checkFree normalises an address and fails with ErrInUse naming the entry
// that already has it.
func (m *Manager) checkFree(ctx context.Context, address string) (string, error) {
	a, err := normalize(&m.d.cfg, address)
	if err != nil {
		return "", err
	}
	e, err := m.find(ctx, a.String())
	if err == nil {
		return "", fmt.Errorf("%w: address %s is already used by %s", ErrInUse, a, e.DN)
	}
	if !errors.Is(err, ErrNotFound) {
		return "", err
	}
	return a.String(), nil
}

// write runs a write operation and maps LDAP errors to clear ones.
func (m *Manager) write(ctx context.Context, what string, fn func(c *ldap.Conn) error) error {
	err := m.d.lookup.do(ctx, fn)
	switch {
	case err == nil:
		return nil
	case ldap.IsErrorWithCode(err, ldap.LDAPResultEntryAlreadyExists):
		return fmt.Errorf("%s: %w: the entry already exists", what, ErrInUse)
	case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
		return fmt.Errorf("%s: %w: %v", what, ErrNotFound, ldapMessage(err))
	case ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights):
		return fmt.Errorf("%s: the bind DN may not do this (insufficient access): %v", what, ldapMessage(err))
	}
	return fmt.Errorf("%s: %w", what, err)
}

func ldapMessage(err error) string {
	var le *ldap.Error
	if errors.As(err, &le) && le.Err != nil {
		return le.Err.Error()
	}
	return err.Error()
}

// AddUser creates an account and, if u.Password is set, sets it with method
// ("" means PasswordAuto): with a hash method the hash is part of the new
// entry; with the extended operation it is set right after the add. It
// fails with ErrInUse, naming the entry, if the address, an alias or the
// login is taken.
func (m *Manager) AddUser(ctx context.Context, u NewUser, method PasswordMethod) (AccountInfo, error) {
	addr, err := m.checkFree(ctx, u.Address)
	if err != nil {
		return AccountInfo{}, err
	}
	var aliases []string
	for _, a := range u.Aliases {
		n, err := m.checkFree(ctx, a)
		if err != nil {
			return AccountInfo{}, err
		}
		if n != addr && !contains(aliases, n) {
			aliases = append(aliases, n)
		}
	}
	uid := u.UID
	if uid == "" {
		uid = addr[:strings.LastIndexByte(addr, '@')]
	}
	if !validLogin(uid) || strings.Contains(uid, "@") {
		return AccountInfo{}, fmt.Errorf("%w: %q cannot be a login", ErrInvalidAddress, uid)
	}
	if e, err := m.find(ctx, uid); err == nil {
		return AccountInfo{}, fmt.Errorf("%w: login %s is already used by %s", ErrInUse, uid, e.DN)
	} else if !errors.Is(err, ErrNotFound) {
		return AccountInfo{}, err
	}
	name := u.Name
	if name == "" {
		name = uid
	}
	c := &m.d.cfg
	dn := fmt.Sprintf("%s=%s,%s", c.AttrLogin, ldap.EscapeDN(uid), m.cfg.PeopleDN)
	req := ldap.NewAddRequest(dn, nil)
	req.Attribute("objectClass", []string{"inetOrgPerson", "inetLocalMailRecipient", "mailclusterAccount"})
	req.Attribute(c.AttrLogin, []string{uid})
	req.Attribute("cn", []string{name})
	req.Attribute("sn", []string{name})
	req.Attribute(c.AttrMail, []string{addr})
	if len(aliases) > 0 {
		req.Attribute(c.AttrAlias, aliases)
	}
	if u.Backend != "" && attr(c.AttrBackend) {
		req.Attribute(c.AttrBackend, []string{u.Backend})
	}
	if u.Quota.StorageBytes > 0 && attr(c.AttrQuotaBytes) {
		req.Attribute(c.AttrQuotaBytes, []string{strconv.FormatInt(u.Quota.StorageBytes, 10)})
	}
	if u.Quota.Messages > 0 && attr(c.AttrQuotaMessages) {
		req.Attribute(c.AttrQuotaMessages, []string{strconv.FormatInt(u.Quota.Messages, 10)})
	}
	if attr(c.AttrEnabled) {
		req.Attribute(c.AttrEnabled, []string{strings.ToUpper(strconv.FormatBool(!u.Disabled))})
	}
	if method == "" {
		method = PasswordAuto
	}
	if u.Password != "" && method != PasswordAuto && method != PasswordExtOp {
		h, err := hashPassword(u.Password, method)
		if err != nil {
			return AccountInfo{}, err
		}
		req.Attribute("userPassword", []string{h})
	}
	if err := m.write(ctx, "add "+dn, func(c *ldap.Conn) error { return c.Add(req) }); err != nil {
		return AccountInfo{}, err
	}
	if u.Password != "" && (method == PasswordAuto || method == PasswordExtOp) {
		if _, err := m.setPassword(ctx, dn, u.Password, method); err != nil {
			return AccountInfo{}, fmt.Errorf("account %s created, but: %w", dn, err)
		}
	}
	return m.User(ctx, uid)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// User returns the account with an address (primary or alias) or login.
func (m *Manager) User(ctx context.Context, who string) (AccountInfo, error) {
	e, err := m.findAccount(ctx, who)
	if err != nil {
		return AccountInfo{}, err
	}
	return m.d.account(e), nil
}

// Users lists the accounts below the base DN, sorted by address; with a
// domain, only those whose primary address is in it.
func (m *Manager) Users(ctx context.Context, domain string) ([]AccountInfo, error) {
	c := &m.d.cfg
	f := "(&(!(objectClass=" + ldap.EscapeFilter(c.ListObjectClass) + "))(" + c.AttrMail + "=*"
	if domain != "" {
		f += "@" + ldap.EscapeFilter(strings.ToLower(domain))
	}
	f += "))"
	var out []AccountInfo
	err := m.d.lookup.do(ctx, func(conn *ldap.Conn) error {
		r, err := conn.SearchWithPaging(ldap.NewSearchRequest(c.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
			0, 0, false, f, m.d.attrs, nil), 500)
		if err != nil {
			return err
		}
		out = out[:0]
		for _, e := range r.Entries {
			out = append(out, m.d.account(e))
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out, err
}

// SetEnabled enables or disables an account (login and delivery).
func (m *Manager) SetEnabled(ctx context.Context, who string, enabled bool) error {
	if !attr(m.d.cfg.AttrEnabled) || m.d.cfg.EnabledMode != EnabledBoolean {
		return errors.New("enable/disable needs a boolean ldap-attr-enabled (OpenLDAP preset)")
	}
	return m.replace(ctx, who, m.d.cfg.AttrEnabled, strings.ToUpper(strconv.FormatBool(enabled)))
}

// SetBackend sets an account's backend (mailHost); empty removes it.
func (m *Manager) SetBackend(ctx context.Context, who, backend string) error {
	if !attr(m.d.cfg.AttrBackend) {
		return errors.New("ldap-attr-backend is disabled")
	}
	return m.replace(ctx, who, m.d.cfg.AttrBackend, backend)
}

// SetQuota sets an account's quota; 0 removes a limit (backend default).
func (m *Manager) SetQuota(ctx context.Context, who string, q Quota) error {
	set := func(attrName string, v int64) error {
		if !attr(attrName) {
			return nil
		}
		s := ""
		if v > 0 {
			s = strconv.FormatInt(v, 10)
		}
		return m.replace(ctx, who, attrName, s)
	}
	if err := set(m.d.cfg.AttrQuotaBytes, q.StorageBytes); err != nil {
		return err
	}
	return set(m.d.cfg.AttrQuotaMessages, q.Messages)
}

func (m *Manager) replace(ctx context.Context, who, attrName, value string) error {
	e, err := m.findAccount(ctx, who)
	if err != nil {
		return err
	}
	req := ldap.NewModifyRequest(e.DN, nil)
	if value == "" {
		if len(e.GetEqualFoldAttributeValues(attrName)) == 0 {
			return nil
		}
		req.Delete(attrName, nil)
	} else {
		req.Replace(attrName, []string{value})
	}
	return m.write(ctx, "modify "+e.DN, func(c *ldap.Conn) error { return c.Modify(req) })
}

// SetPassword sets an account's password and returns the method used.
func (m *Manager) SetPassword(ctx context.Context, who, password string, method PasswordMethod) (PasswordMethod, error) {
	if password == "" || strings.ContainsRune(password, 0) {
		return "", errors.New("the password may not be empty or contain NUL")
	}
	e, err := m.findAccount(ctx, who)
	if err != nil {
		return "", err
	}
	return m.setPassword(ctx, e.DN, password, method)
}

func (m *Manager) setPassword(ctx context.Context, dn, password string, method PasswordMethod) (PasswordMethod, error) {
	if method == "" {
		method = PasswordAuto
	}
	if method == PasswordAuto {
		method = PasswordSSHA
		if ok, err := m.supportsPasswordModify(ctx); err != nil {
			return "", err
		} else if ok {
			method = PasswordExtOp
		}
	}
	if method == PasswordExtOp {
		err := m.write(ctx, "password modify "+dn, func(c *ldap.Conn) error {
			_, err := c.PasswordModify(ldap.NewPasswordModifyRequest(dn, "", password))
			return err
		})
		return method, err
	}
	h, err := hashPassword(password, method)
	if err != nil {
		return "", err
	}
	req := ldap.NewModifyRequest(dn, nil)
	req.Replace("userPassword", []string{h})
	return method, m.write(ctx, "set userPassword of "+dn, func(c *ldap.Conn) error { return c.Modify(req) })
}

// supportsPasswordModify reads the root DSE's supportedExtension (once).
func (m *Manager) supportsPasswordModify(ctx context.Context) (bool, error) {
	m.pmMu.Lock()
	defer m.pmMu.Unlock()
	if m.pmKnown {
		return m.pmOK, nil
	}
	var ok bool
	err := m.d.lookup.do(ctx, func(c *ldap.Conn) error {
		r, err := c.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
			"(objectClass=*)", []string{"supportedExtension"}, nil))
		if err != nil {
			return err
		}
		for _, e := range r.Entries {
			ok = contains(e.GetAttributeValues("supportedExtension"), oidPasswordModify)
		}
		return nil
	})
	if err == nil {
		m.pmKnown, m.pmOK = true, ok
	}
	return ok, err
}

// hashPassword returns a userPassword value in RFC 2307 {SCHEME} form.
func hashPassword(password string, method PasswordMethod) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	switch method {
	case PasswordSSHA:
		h := sha1.New()
		h.Write([]byte(password))
		h.Write(salt)
		return "{SSHA}" + base64.StdEncoding.EncodeToString(append(h.Sum(nil), salt...)), nil
	case PasswordArgon2:
		const t, mem, p = 3, 64 * 1024, 1
		key := argon2.IDKey([]byte(password), salt, t, mem, p, 32)
		b64 := base64.RawStdEncoding
		return fmt.Sprintf("{ARGON2}$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, mem, t, p,
			b64.EncodeToString(salt), b64.EncodeToString(key)), nil
	}
	return "", fmt.Errorf("unknown password method %q (want auto, extop, ssha or argon2)", method)
}

// DeleteUser deletes an account and removes it from every list. It refuses
// (changing nothing) if the account is the last member of a list.
func (m *Manager) DeleteUser(ctx context.Context, who string) error {
	e, err := m.findAccount(ctx, who)
	if err != nil {
		return err
	}
	return m.deleteEntry(ctx, e)
}

func (m *Manager) deleteEntry(ctx context.Context, e *ldap.Entry) error {
	parents, err := m.listsContaining(ctx, e.DN)
	if err != nil {
		return err
	}
	for _, p := range parents {
		if len(p.GetEqualFoldAttributeValues(m.d.cfg.AttrMember)) <= 1 {
			return fmt.Errorf("%s is the only member of the list %s: delete that list or add another member first", e.DN, p.DN)
		}
	}
	for _, p := range parents {
		if err := m.removeMemberDN(ctx, p, e.DN); err != nil {
			return err
		}
	}
	return m.write(ctx, "delete "+e.DN, func(c *ldap.Conn) error { return c.Del(ldap.NewDelRequest(e.DN, nil)) })
}

// listsContaining returns the lists that have dn as a direct member.
func (m *Manager) listsContaining(ctx context.Context, dn string) ([]*ldap.Entry, error) {
	c := &m.d.cfg
	f := "(&(objectClass=" + ldap.EscapeFilter(c.ListObjectClass) + ")(" + c.AttrMember + "=" + ldap.EscapeFilter(dn) + "))"
	var out []*ldap.Entry
	err := m.d.lookup.do(ctx, func(conn *ldap.Conn) error {
		r, err := conn.SearchWithPaging(ldap.NewSearchRequest(c.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
			0, 0, false, f, m.d.attrs, nil), 500)
		if err == nil {
			out = r.Entries
		}
		return err
	})
	return out, err
}

// AddAlias gives an account or list a further address.
func (m *Manager) AddAlias(ctx context.Context, who, alias string) error {
	e, err := m.find(ctx, who)
	if err != nil {
		return err
	}
	a, err := m.checkFree(ctx, alias)
	if err != nil {
		return err
	}
	req := ldap.NewModifyRequest(e.DN, nil)
	if m.d.isList(e) && !hasClass(e, "inetLocalMailRecipient") {
		req.Add("objectClass", []string{"inetLocalMailRecipient"})
	}
	req.Add(m.d.cfg.AttrAlias, []string{a})
	return m.write(ctx, "add alias to "+e.DN, func(c *ldap.Conn) error { return c.Modify(req) })
}

func hasClass(e *ldap.Entry, class string) bool {
	return contains(e.GetEqualFoldAttributeValues("objectClass"), class)
}

// RemoveAlias removes a further address from the entry that has it.
func (m *Manager) RemoveAlias(ctx context.Context, who, alias string) error {
	e, err := m.find(ctx, who)
	if err != nil {
		return err
	}
	a, err := normalize(&m.d.cfg, alias)
	if err != nil {
		return err
	}
	for _, v := range e.GetEqualFoldAttributeValues(m.d.cfg.AttrAlias) {
		if sameAddress(&m.d.cfg, v, a) {
			req := ldap.NewModifyRequest(e.DN, nil)
			req.Delete(m.d.cfg.AttrAlias, []string{v})
			return m.write(ctx, "remove alias from "+e.DN, func(c *ldap.Conn) error { return c.Modify(req) })
		}
	}
	if sameAddress(&m.d.cfg, e.GetEqualFoldAttributeValue(m.d.cfg.AttrMail), a) {
		return fmt.Errorf("%s is the primary address of %s, not an alias", a, e.DN)
	}
	return fmt.Errorf("%w: %s has no alias %s", ErrNotFound, e.DN, a)
}

// CreateList creates a distribution list. groupOfNames needs at least one
// member: members are addresses or logins of accounts or lists.
func (m *Manager) CreateList(ctx context.Context, address, name string, members []string) (ListInfo, error) {
	addr, err := m.checkFree(ctx, address)
	if err != nil {
		return ListInfo{}, err
	}
	if len(members) == 0 {
		return ListInfo{}, errors.New("a list needs at least one member (groupOfNames requires one)")
	}
	var dns []string
	for _, mem := range members {
		e, err := m.find(ctx, mem)
		if err != nil {
			return ListInfo{}, fmt.Errorf("member %s: %w", mem, err)
		}
		dns = append(dns, e.DN)
	}
	cn := name
	if cn == "" {
		cn = addr[:strings.LastIndexByte(addr, '@')]
	}
	dn := "cn=" + ldap.EscapeDN(cn) + "," + m.cfg.ListsDN
	req := ldap.NewAddRequest(dn, nil)
	req.Attribute("objectClass", []string{m.d.cfg.ListObjectClass, "inetLocalMailRecipient", "mailclusterList"})
	req.Attribute("cn", []string{cn})
	req.Attribute(m.d.cfg.AttrMail, []string{addr})
	req.Attribute(m.d.cfg.AttrMember, dns)
	if err := m.write(ctx, "add "+dn, func(c *ldap.Conn) error { return c.Add(req) }); err != nil {
		return ListInfo{}, err
	}
	return m.List(ctx, addr)
}

// AddMember adds an account or list (by address or login) to a list.
func (m *Manager) AddMember(ctx context.Context, list, member string) error {
	l, err := m.findList(ctx, list)
	if err != nil {
		return err
	}
	e, err := m.find(ctx, member)
	if err != nil {
		return fmt.Errorf("member %s: %w", member, err)
	}
	for _, v := range l.GetEqualFoldAttributeValues(m.d.cfg.AttrMember) {
		if normDN(v) == normDN(e.DN) {
			return fmt.Errorf("%w: %s is already a member of %s", ErrInUse, e.DN, l.DN)
		}
	}
	req := ldap.NewModifyRequest(l.DN, nil)
	req.Add(m.d.cfg.AttrMember, []string{e.DN})
	return m.write(ctx, "add member to "+l.DN, func(c *ldap.Conn) error { return c.Modify(req) })
}

// RemoveMember removes a direct member from a list; it refuses to remove
// the last one.
func (m *Manager) RemoveMember(ctx context.Context, list, member string) error {
	l, err := m.findList(ctx, list)
	if err != nil {
		return err
	}
	var dn string
	if e, err := m.find(ctx, member); err == nil {
		dn = e.DN
	} else if strings.Contains(member, "=") { // a DN whose entry is gone
		dn = member
	} else {
		return fmt.Errorf("member %s: %w", member, err)
	}
	members := l.GetEqualFoldAttributeValues(m.d.cfg.AttrMember)
	for _, v := range members {
		if normDN(v) == normDN(dn) {
			if len(members) == 1 {
				return fmt.Errorf("%s is the only member of %s: a list needs one; delete the list instead", dn, l.DN)
			}
			return m.removeMemberDN(ctx, l, v)
		}
	}
	return fmt.Errorf("%w: %s is not a member of %s", ErrNotFound, dn, l.DN)
}

func (m *Manager) removeMemberDN(ctx context.Context, l *ldap.Entry, dn string) error {
	for _, v := range l.GetEqualFoldAttributeValues(m.d.cfg.AttrMember) {
		if normDN(v) == normDN(dn) {
			dn = v
		}
	}
	req := ldap.NewModifyRequest(l.DN, nil)
	req.Delete(m.d.cfg.AttrMember, []string{dn})
	return m.write(ctx, "remove member from "+l.DN, func(c *ldap.Conn) error { return c.Modify(req) })
}

// List describes a list and its direct members.
func (m *Manager) List(ctx context.Context, list string) (ListInfo, error) {
	l, err := m.findList(ctx, list)
	if err != nil {
		return ListInfo{}, err
	}
	acc := m.d.account(l)
	info := ListInfo{DN: l.DN, Address: acc.Address, Name: l.GetEqualFoldAttributeValue("cn"), Aliases: acc.Aliases,
		Members: []MemberInfo{}}
	for _, dn := range l.GetEqualFoldAttributeValues(m.d.cfg.AttrMember) {
		mi := MemberInfo{DN: dn, Kind: Unknown}
		e, err := m.d.byDN(ctx, dn)
		if err != nil {
			return ListInfo{}, err
		}
		if e != nil {
			a := m.d.account(e)
			mi.Address = a.Address
			switch {
			case m.d.isList(e):
				mi.Kind = List
			case len(a.Forward) > 0:
				mi.Kind = Forward
			default:
				mi.Kind = Account
			}
		}
		info.Members = append(info.Members, mi)
	}
	return info, nil
}

// DeleteList deletes a list (removing it from lists that contain it; not
// its members).
func (m *Manager) DeleteList(ctx context.Context, list string) error {
	l, err := m.findList(ctx, list)
	if err != nil {
		return err
	}
	return m.deleteEntry(ctx, l)
}

// BulkOptions tunes BulkAdd.
type BulkOptions struct {
	Workers int            // concurrent adds; ≤ 0 means 4
	Method  PasswordMethod // how passwords are set; "" means PasswordAuto
}

// BulkError is one account BulkAdd could not create.
type BulkError struct {
	Index   int    `json:"index"`
	Address string `json:"address"`
	Err     string `json:"error"`
}

// BulkAdd creates many accounts concurrently (for migrations and load
// tests). Each account is created as AddUser would, independently: a
// failure is reported in the returned list and does not stop the others.
// progress, if not nil, is called after each account (from any goroutine).
func (m *Manager) BulkAdd(ctx context.Context, users []NewUser, opt BulkOptions, progress func(done int)) (added int, failed []BulkError) {
	if opt.Workers <= 0 {
		opt.Workers = 4
	}
	method := opt.Method
	if method == "" || method == PasswordAuto {
		method = PasswordSSHA
		if ok, err := m.supportsPasswordModify(ctx); err == nil && ok {
			method = PasswordExtOp
		}
	}
	// Addresses used twice within the input would pass the check against
	// LDAP concurrently: refuse the later ones up front.
	first := map[string]int{}
	skip := map[int]bool{}
	for i, u := range users {
		for _, a := range append([]string{u.Address}, u.Aliases...) {
			n, err := normalize(&m.d.cfg, a)
			if err != nil {
				continue // AddUser reports it
			}
			if j, ok := first[n.String()]; ok && j != i {
				skip[i] = true
				failed = append(failed, BulkError{Index: i, Address: u.Address,
					Err: fmt.Sprintf("address %s appears again (first at entry %d)", n, j+1)})
				break
			}
			first[n.String()] = i
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < opt.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				_, err := m.AddUser(ctx, users[i], method)
				mu.Lock()
				if err != nil {
					failed = append(failed, BulkError{Index: i, Address: users[i].Address, Err: err.Error()})
				} else {
					added++
				}
				done := added + len(failed)
				mu.Unlock()
				if progress != nil {
					progress(done)
				}
			}
		}()
	}
	for i := range users {
		if ctx.Err() != nil {
			break
		}
		if !skip[i] {
			next <- i
		}
	}
	close(next)
	wg.Wait()
	sort.Slice(failed, func(i, j int) bool { return failed[i].Index < failed[j].Index })
	return added, failed
}

// Explanation is what the cluster would do with mail to, or a login as, an
// address: for `admin explain`.
type Explanation struct {
	Input       string       `json:"input"`
	Address     string       `json:"address,omitempty"` // normalised
	LocalDomain bool         `json:"local_domain"`
	Subaddress  string       `json:"subaddress,omitempty"`
	Result      *Result      `json:"result,omitempty"`
	Error       string       `json:"error,omitempty"`     // why Resolve failed
	Entry       *AccountInfo `json:"entry,omitempty"`     // the entry mail goes to (not for lists)
	MemberOf    []string     `json:"member_of,omitempty"` // lists that contain the entry directly (DNs)
	Login       LoginCheck   `json:"login"`
}

// LoginCheck says what a login as the input would find.
type LoginCheck struct {
	Entries []string `json:"entries"` // DNs the login filter matches: exactly one is needed
	Enabled bool     `json:"enabled"`
	Note    string   `json:"note"`
}

// Explain resolves an address without the cache and says why.
func (m *Manager) Explain(ctx context.Context, input string) (Explanation, error) {
	x := Explanation{Input: input}
	a, err := normalize(&m.d.cfg, input)
	if err != nil {
		return x, err
	}
	x.Address = a.String()
	x.LocalDomain = isLocal(&m.d.cfg, a.Domain)
	if x.LocalDomain {
		res, err := m.d.fetch(ctx, a)
		if err == nil && res.Kind == Unknown {
			if b, ok := base(&m.d.cfg, a); ok {
				if bres, berr := m.d.fetch(ctx, b); berr != nil || bres.Kind != Unknown {
					res, err = bres, berr
					res.Detail = b.Detail
					x.Subaddress = b.Detail
				}
			}
		}
		if errors.Is(err, ErrTemporary) {
			return x, err
		}
		if err != nil {
			x.Error = err.Error()
		} else {
			x.Result = &res
			if res.Kind == Account || res.Kind == Forward {
				acc := res.Account
				x.Entry = &acc
			}
			if res.DN != "" {
				parents, err := m.listsContaining(ctx, res.DN)
				if err != nil {
					return x, err
				}
				for _, p := range parents {
					x.MemberOf = append(x.MemberOf, p.DN)
				}
			}
		}
	}
	entries, err := m.d.search(ctx, m.d.cfg.LoginFilter, x.Address, 0)
	if err != nil {
		return x, err
	}
	x.Login.Entries = []string{}
	for _, e := range entries {
		x.Login.Entries = append(x.Login.Entries, e.DN)
	}
	switch len(entries) {
	case 0:
		x.Login.Note = "no account matches this login: logins fail"
	case 1:
		x.Login.Enabled = m.d.account(entries[0]).Enabled
		x.Login.Note = "logins bind as this entry"
		if !x.Login.Enabled {
			x.Login.Note = "the account is disabled: logins with the right password are refused"
		}
	default:
		x.Login.Note = "several accounts match this login: logins fail until it is unique"
	}
	return x, nil
}
