package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tapline/tapline/query/client"
	"github.com/tapline/tapline/query/replay"
	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
)

func init() { register(newReplayCmd()) }

func newReplayCmd() *cobra.Command {
	var (
		af        apiFlags
		format    string
		speed     float64
		idleLimit time.Duration
		follow    bool
		maxRows   int
		channel   int64
	)
	cmd := &cobra.Command{
		Use:   "replay SESSION_ID [--speed N] [--format text|asciicast|json|har]",
		Short: "Replay a recorded session",
		Long: `Replay a session from the query API: a Postgres session as a transcript of its
statements, parameters, results and errors; an SSH session's terminal.

In a terminal (or with --speed) text and asciicast play with the recorded timing: SSH
output is played as the agent saw it, Postgres statements appear as they were run.
Otherwise the replay is written out at once: text, asciicast v2 (SSH; save it as .cast
for asciinema), json (one event per line) or har (HTTP sessions: HAR 1.2, opens in
browser devtools and HAR viewers). --follow tails a live session.`,
		Example: `  tapline replay 0192f0c4-3c1e-7b4a-9d4e-2f6a1b8c9d0e
  tapline replay $ID --speed 4 --idle-limit 2s
  tapline replay $ID --format asciicast > session.cast
  tapline replay $ID --format har > session.har
  tapline replay $ID --format json | jq 'select(.type == "statement") | .statement.text'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			id := args[0]
			if known := replayFormats(); !slices.Contains(known, format) {
				return fmt.Errorf("--format %q: want one of %s", format, strings.Join(known, ", "))
			}
			opt := client.ReplayOptions{Format: format, Follow: follow, MaxRows: maxRows}
			if cmd.Flags().Changed("channel") {
				opt.Channel = &channel
			}
			play := format != "json" && format != "har" && (cmd.Flags().Changed("speed") || stdoutIsTerminal())
			if !play {
				return dumpReplay(cmd, c, id, opt)
			}
			if speed <= 0 {
				return fmt.Errorf("--speed %v: must be positive", speed)
			}
			sess, err := c.Session(cmd.Context(), id)
			if err != nil {
				return err
			}
			name := schemas.Protocol(sess.Protocol)
			if err := replay.Check(name, replay.Format(format)); err != nil {
				return err
			}
			playFormat, ok := replay.PlayFormat(name)
			if !ok {
				return dumpReplay(cmd, c, id, opt)
			}
			opt.Format = playFormat
			stream, err := c.Replay(cmd.Context(), id, opt)
			if err != nil {
				return err
			}
			defer stream.Close()
			p := &replay.Player{Speed: speed, IdleLimit: idleLimit}
			return p.Play(cmd.Context(), name, stream, cmd.OutOrStdout())
		},
	}
	af.add(cmd)
	f := cmd.Flags()
	f.StringVar(&format, "format", "text", "text, asciicast (SSH), json or har (HTTP: HAR 1.2 for browser devtools)")
	f.Float64Var(&speed, "speed", 1, "playback speed factor; setting it plays even when not on a terminal")
	f.DurationVar(&idleLimit, "idle-limit", 0, "cap pauses during playback at this (e.g. 2s); 0 keeps them")
	f.BoolVar(&follow, "follow", false, "keep replaying a live session as it is recorded")
	f.IntVar(&maxRows, "max-rows", 0, "Postgres result rows shown per statement (server default 100)")
	f.Int64Var(&channel, "channel", 0, "SSH channel to play (default: the first shell)")
	return cmd
}

func dumpReplay(cmd *cobra.Command, c *client.Client, id string, opt client.ReplayOptions) error {
	stream, err := c.Replay(cmd.Context(), id, opt)
	if err != nil {
		return err
	}
	defer stream.Close()
	_, err = io.Copy(cmd.OutOrStdout(), stream)
	return err
}

// replayFormats lists every format some registered protocol replays as.
func replayFormats() []string {
	var out []string
	for _, p := range protocol.All() {
		for _, f := range replay.Formats(p.Name()) {
			if !slices.Contains(out, string(f)) {
				out = append(out, string(f))
			}
		}
	}
	return out
}
