package postgres

import (
	"github.com/jackc/pgproto3/v2"
)

// SQLSTATE codes the gateway answers with itself.
const (
	codeProtocolViolation   = "08P01" // protocol_violation
	codeRejected            = "08004" // sqlserver_rejected_establishment_of_sqlconnection
	codeCannotConnect       = "08001" // sqlclient_unable_to_establish_sqlconnection
	codeConnectionFailure   = "08006" // connection_failure
	codeInvalidAuthSpec     = "28000" // invalid_authorization_specification
	codeInvalidPassword     = "28P01" // invalid_password
	codeFeatureNotSupported = "0A000" // feature_not_supported
	codeAdminShutdown       = "57P01" // admin_shutdown
	codeProgramLimit        = "54000" // program_limit_exceeded
	codeTooManyConnections  = "53300" // too_many_connections
)

// Messages the agent sees. They start with "tapline:" so an operator can tell the
// gateway's errors from the target's.
const (
	msgRecordingUnavailable = "tapline: recording unavailable (Kafka): connection refused to keep every command recorded"
	msgRecordingFailed      = "tapline: recording unavailable (Kafka): the last message was not sent to the target; connection closed to keep every command recorded"
	msgShutdown             = "tapline: gateway shutting down"
)

// fatalMessage encodes an ErrorResponse with severity FATAL: the connection ends after it.
func fatalMessage(code, message string) []byte {
	return errorMessage("FATAL", code, message, "")
}

func errorMessage(severity, code, message, hint string) []byte {
	e := &pgproto3.ErrorResponse{
		Severity:            severity,
		SeverityUnlocalized: severity,
		Code:                code,
		Message:             message,
		Hint:                hint,
	}
	b, err := e.Encode(nil)
	if err != nil {
		panic(err) // only fails on oversized messages; ours are short constants
	}
	return b
}

func encode(m interface{ Encode([]byte) ([]byte, error) }) []byte {
	b, err := m.Encode(nil)
	if err != nil {
		panic(err) // fixed-size messages built by the gateway
	}
	return b
}
