package directory_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"mailcluster/directory"
	"mailcluster/internal/config"
	"mailcluster/internal/testenv"
)

// Every directory and admin setting is documented in the README's
// "Directory (LDAP)" section.
func TestReadmeDocumentsEverySetting(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(readme, []byte("## Directory (LDAP)"))
	if i < 0 {
		t.Fatal("README has no Directory (LDAP) section")
	}
	section := readme[i:]
	cfg := directory.DefaultManagerConfig()
	for _, s := range config.Describe(&cfg) {
		if !bytes.Contains(section, []byte("`"+s.Env+"`")) || !bytes.Contains(section, []byte("`-"+s.Flag+"`")) {
			t.Errorf("README does not document %s (-%s)", s.Env, s.Flag)
		}
	}
}
