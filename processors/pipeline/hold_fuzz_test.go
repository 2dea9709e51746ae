package pipeline

import (
	"sort"
	"strings"
	"testing"

	"github.com/tapline/tapline/schemas"
)

// FuzzHoldBack: a planted secret between any bytes, the whole cut anywhere into up
// to four frames of one stream, leaves no byte of the secret unmasked that the
// uncut text masks, and every frame leaves once, in seq order, verifying.
func FuzzHoldBack(f *testing.F) {
	for i := range plantedSecrets {
		f.Add([]byte("$ "), uint8(i), uint16(i*7), uint16(i*13), uint16(i*29), i%2 == 0)
	}
	f.Add([]byte("PASSWORD '"), uint8(13), uint16(3), uint16(40), uint16(41), true)
	f.Fuzz(func(t *testing.T, p []byte, which uint8, a, b, c uint16, client bool) {
		dir := schemas.Server
		if client {
			dir = schemas.Client
		}
		planted := plantedSecrets[int(which)%len(plantedSecrets)]
		text := string(p) + "\n" + planted.text + string(p)
		at := len(p) + 1 + strings.Index(planted.text, planted.secret)
		whole := streamData(processAll(sharedProcessor(t), splitSession(dir, text).Frames).Frames)
		for i := at; i < at+len(planted.secret); i++ {
			if whole[i] != '*' && whole[i] != '\n' {
				t.Skip("the uncut text does not mask the secret: the bytes around it change what it is")
			}
		}
		cuts := []int{int(a) % (len(text) + 1), int(b) % (len(text) + 1), int(c) % (len(text) + 1)}
		sort.Ints(cuts)
		s := splitSession(dir, text, cuts...)
		out := processAll(sharedProcessor(t), s.Frames)
		checkFrames(t, s.Frames, out.Frames)
		data := streamData(out.Frames)
		if len(data) != len(text) {
			t.Fatalf("%d bytes of data, want %d", len(data), len(text))
		}
		for i := at; i < at+len(planted.secret); i++ {
			if data[i] != '*' && data[i] != '\n' {
				t.Fatalf("cuts %v: byte %d of %q leaves unmasked: %q", cuts, i-at, planted.secret, data)
			}
		}
	})
}

// streamData joins the channel data of frames.
func streamData(frames []schemas.Frame) []byte {
	var data []byte
	for _, f := range frames {
		if f.Kind == "ssh.channel.data" {
			data = append(data, f.Payload...)
		}
	}
	return data
}
