package sshproxy_test

import (
	"crypto/rand"
	"crypto/sha256"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// transferMB is the size of each file copied (TAPLINE_SSH_TEST_MB, default 100).
func transferMB(t *testing.T) int {
	if v := os.Getenv("TAPLINE_SSH_TEST_MB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("TAPLINE_SSH_TEST_MB=%q: want a positive number", v)
		}
		return n
	}
	return 100
}

func TestSCPAndSFTPBothWays(t *testing.T) {
	g := startGateway(t, gatewayOpts{})
	size := int64(transferMB(t)) << 20
	local := t.TempDir()
	remote := targetDir(t)
	src := filepath.Join(local, "src.bin")
	want := randomFile(t, src, size)
	onTarget := filepath.Join(remote, "from-target.bin")
	randomFileAs(t, onTarget, size, sshTarget(t).User)
	wantDown := fileSum(t, onTarget)
	port := []string{"-P", g.port}

	run := func(sub string, tool string, args ...string) {
		t.Helper()
		start := time.Now()
		cmd := g.command(g.token(sub, "ops"), tool, append(append(g.sshArgs(), port...), args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", tool, args, err, out)
		}
		t.Logf("%s: %d MiB in %s", sub, size>>20, time.Since(start).Round(time.Millisecond))
	}
	run("scp-up", "scp", "-O", "-q", src, "box@127.0.0.1:"+filepath.Join(remote, "scp-up.bin"))
	run("scp-down", "scp", "-O", "-q", "box@127.0.0.1:"+onTarget, filepath.Join(local, "scp-down.bin"))
	batch := filepath.Join(local, "batch")
	writeFile(t, batch, []byte("put "+src+" "+filepath.Join(remote, "sftp-up.bin")+"\nget "+onTarget+" "+filepath.Join(local, "sftp-down.bin")+"\n"))
	// -b alone turns on BatchMode, which forbids the password prompt; the
	// earlier -o wins.
	run("sftp", "sftp", "-o", "BatchMode=no", "-b", batch, "box@127.0.0.1")

	for path, sum := range map[string][32]byte{
		filepath.Join(remote, "scp-up.bin"):   want,
		filepath.Join(remote, "sftp-up.bin"):  want,
		filepath.Join(local, "scp-down.bin"):  wantDown,
		filepath.Join(local, "sftp-down.bin"): wantDown,
	} {
		if got := fileSum(t, path); got != sum {
			t.Errorf("%s: checksum differs", path)
		}
	}
	for sub, min := range map[string][2]int64{"scp-up": {size, 0}, "scp-down": {0, size}, "sftp": {size, size}} {
		end := verifyChain(t, g.signer, g.frames.session(bySubject(sub)))
		if end.BytesClient < min[0] || end.BytesServer < min[1] {
			t.Errorf("%s: recorded %d client / %d server bytes, want at least %d / %d", sub, end.BytesClient, end.BytesServer, min[0], min[1])
		}
	}
}

// targetDir is a directory the target user may write and the test may read.
func targetDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tapline-ssh-it-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	uid, gid := lookupUser(t, sshTarget(t).User)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatalf("chown %s to the target user: %v", dir, err)
	}
	return dir
}

func lookupUser(t *testing.T, name string) (int, int) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

func randomFile(t *testing.T, path string, size int64) [32]byte {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func randomFileAs(t *testing.T, path string, size int64, owner string) {
	t.Helper()
	randomFile(t, path, size)
	uid, gid := lookupUser(t, owner)
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}
