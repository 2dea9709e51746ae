package ssh

import (
	"encoding/json"
	"testing"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
	"github.com/tapline/tapline/schemas/sessiontest"
)

var sshStitchKinds = []string{"ssh.channel.open", "ssh.request.pty-req", "ssh.request.exec", "ssh.request.subsystem",
	"ssh.request.shell", "ssh.channel.data", "ssh.request.exit-status", "ssh.request.exit-signal", "ssh.channel.eof",
	"ssh.channel.close", "ssh.request.env", "ssh.global.tcpip-forward", "ssh.channel.extended-data"}

// FuzzStitchSSH: any sequence of SSH frames with any payloads stitches without panic,
// and the state survives a save and restore.
func FuzzStitchSSH(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x00\x07session\xa5\x04\xa5\x05ls -la\r\xa5\x26\x00\x00\x00\x00\xa5\x09"))
	f.Add([]byte("\x02\x00\x00\x00\x02ls\xa5\x26\xff\xff\xa5\x07\x00\x00\x00\x01X"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st := &Stitcher{}
		frames := sessiontest.FuzzFrames(data, schemas.SSH, sshStitchKinds)
		for i := range frames {
			sessiontest.CheckCommands(t, st.Frame(&frames[i], protocol.Limits{}), int64(len(frames)))
			b, err := json.Marshal(st)
			if err != nil {
				t.Fatal(err)
			}
			st = &Stitcher{}
			if err := json.Unmarshal(b, st); err != nil {
				t.Fatal(err)
			}
		}
		if len(frames) > 0 {
			sessiontest.CheckCommands(t, st.Flush(&frames[len(frames)-1], "end"), int64(len(frames)))
		}
	})
}
