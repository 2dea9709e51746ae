// Package ssh is SSH as tapline records it: the frame kinds the edge (ingest/ssh)
// writes and what the processors and the replay read from them.
package ssh

// Frame kinds. Channel frames carry one SSH channel's messages; requests, global
// requests and their replies are named after the request (ssh.request.<name>).
const (
	ChannelOpen        = "ssh.channel.open"
	ChannelOpenFailure = "ssh.channel.open-failure"
	ChannelData        = "ssh.channel.data"
	ChannelExtData     = "ssh.channel.extended-data"
	ChannelEOF         = "ssh.channel.eof"
	ChannelClose       = "ssh.channel.close"

	ChannelPrefix = "ssh.channel."
	RequestPrefix = "ssh.request."
	GlobalPrefix  = "ssh.global."
	ReplyPrefix   = "ssh.reply."

	RequestPTY        = RequestPrefix + "pty-req"
	RequestShell      = RequestPrefix + "shell"
	RequestExec       = RequestPrefix + "exec"
	RequestSubsystem  = RequestPrefix + "subsystem"
	RequestEnv        = RequestPrefix + "env"
	RequestWindow     = RequestPrefix + "window-change"
	RequestExitStatus = RequestPrefix + "exit-status"
	RequestExitSignal = RequestPrefix + "exit-signal"
)

// GlobalChannel is the channel number of frames that belong to no channel (global
// requests and their replies).
const GlobalChannel = -1
