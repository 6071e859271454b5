package directory

import (
	"slices"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// TestADPresetAttributes reads an entry shaped like Active Directory's
// (binary objectGUID, userAccountControl, proxyAddresses) with the ad preset.
// No AD server runs in the tests; this checks how its values are read.
func TestADPresetAttributes(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Preset, cfg.BaseDN = PresetAD, "dc=corp,dc=example"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	guid := []byte{0xe0, 0x04, 0x25, 0x3f, 0x89, 0x4f, 0xd3, 0x11, 0x9a, 0x0c, 0x03, 0x05, 0xe8, 0x2c, 0x33, 0x01}
	entry := func(uac string) *ldap.Entry {
		e := ldap.NewEntry("CN=Alice,OU=Staff,DC=corp,DC=example", map[string][]string{
			"objectClass":         {"top", "person", "organizationalPerson", "user"},
			"mail":                {"Alice@Corp.example"},
			"proxyAddresses":      {"SMTP:Alice@Corp.example", "smtp:a.smith@corp.example", "X400:c=US;a= ;p=Corp;o=Exchange;s=Alice;"},
			"sAMAccountName":      {"alice"},
			"displayName":         {"Alice Smith"},
			"extensionAttribute1": {"backend-3"},
			"extensionAttribute2": {"5368709120"},
			"userAccountControl":  {uac},
		})
		e.Attributes = append(e.Attributes, &ldap.EntryAttribute{Name: "objectGUID", Values: []string{string(guid)}, ByteValues: [][]byte{guid}})
		return e
	}
	acc := accountFrom(&cfg, entry("512"))
	want := AccountInfo{ID: "3f2504e0-4f89-11d3-9a0c-0305e82c3301", DN: "CN=Alice,OU=Staff,DC=corp,DC=example",
		Address: "Alice@Corp.example", Aliases: []string{"a.smith@corp.example"}, Login: "alice", Name: "Alice Smith",
		Backend: "backend-3", Quota: Quota{StorageBytes: 5 << 30}, Enabled: true}
	if acc.ID != want.ID || acc.Address != want.Address || !slices.Equal(acc.Aliases, want.Aliases) || acc.Login != want.Login ||
		acc.Name != want.Name || acc.Backend != want.Backend || acc.Quota != want.Quota || !acc.Enabled || len(acc.Forward) != 0 {
		t.Fatalf("got %+v\nwant %+v", acc, want)
	}
	if acc := accountFrom(&cfg, entry("514")); acc.Enabled { // NORMAL_ACCOUNT | ACCOUNTDISABLE
		t.Fatal("userAccountControl 514 read as enabled")
	}
	d := &Directory{cfg: cfg}
	for _, addr := range []string{"alice@corp.example", "A.Smith@CORP.example"} {
		a, err := normalize(&cfg, addr)
		if err != nil || !d.owns(entry("512"), a) {
			t.Errorf("%s: not owned by the entry (%v)", addr, err)
		}
	}
	if d.isList(entry("512")) {
		t.Error("a user read as a list")
	}
	group := ldap.NewEntry("CN=Team,DC=corp,DC=example", map[string][]string{"objectClass": {"top", "group"}})
	if !d.isList(group) {
		t.Error("a group not read as a list")
	}
}
