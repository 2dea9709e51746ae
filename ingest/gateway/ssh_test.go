package gateway

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func sshExample(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"key", "known_hosts"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return example + `  - name: box
    protocol: ssh
    address: "127.0.0.1:22"
    groups: [ops]
    ssh: {user: tapline-target, key_file: ` + filepath.Join(dir, "key") + `, known_hosts: ` + filepath.Join(dir, "known_hosts") + `}
ssh: {listen: "127.0.0.1:2222", user_separator: "%"}
`
}

func TestParseSSH(t *testing.T) {
	cfg, err := Parse([]byte(sshExample(t)), env(map[string]string{"APP_DB_PASSWORD": "pw", "TAPLINE_SSH_DIAL_TIMEOUT": "3s"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SSH.Listen != "127.0.0.1:2222" || cfg.SSH.UserSeparator != "%" || cfg.SSH.DialTimeout != 3*time.Second ||
		cfg.Targets[1].SSH.User != "tapline-target" || cfg.Targets[1].SSH.AllowPortForwarding {
		t.Fatalf("parsed %+v %+v", cfg.SSH, cfg.Targets[1].SSH)
	}
}

func TestParseSSHErrorsNameTheKey(t *testing.T) {
	base := sshExample(t)
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"no listener", strings.Replace(base, `ssh: {listen: "127.0.0.1:2222", user_separator: "%"}`, "", 1),
			[]string{"targets[1].protocol: ssh target but no ssh listener"}},
		{"no host key check", regexp.MustCompile(`, known_hosts: [^}]*`).ReplaceAllString(base, ""),
			[]string{"targets[1].ssh.known_hosts: required to verify"}},
		{"both host key modes", strings.Replace(base, "user: tapline-target,", "user: tapline-target, insecure_accept_any_host_key: true,", 1),
			[]string{"targets[1].ssh.insecure_accept_any_host_key: set either"}},
		{"no section", regexp.MustCompile(`    ssh: \{user[^\n]*\n`).ReplaceAllString(base, ""),
			[]string{"targets[1].ssh: required for protocol ssh"}},
		{"no credentials", regexp.MustCompile(`key_file: [^,]*, `).ReplaceAllString(base, ""),
			[]string{"targets[1].ssh.key_file: key_file or password_env is required"}},
		{"missing key file", strings.Replace(base, "/key,", "/nokey,", 1), []string{"targets[1].ssh.key_file: open"}},
		{"no user", strings.Replace(base, "user: tapline-target,", "", 1), []string{"targets[1].ssh.user: required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), env(map[string]string{"APP_DB_PASSWORD": "pw"}))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not mention %q", err, w)
				}
			}
		})
	}
}
