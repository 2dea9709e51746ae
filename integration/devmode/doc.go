// Package devmode tests `tapline dev` the way a newcomer uses it: the binary as a
// subprocess, real psql and ssh through its gateway with a `tapline token`, then a
// restart, after which the sessions must still be listed, replayable and verified.
package devmode
