package postgres

// Frame kinds: a Postgres frame's kind is the name of the wire message it carries,
// as pgproto3 names its type. The edge (ingest/postgres) writes them; everything
// downstream compares against these constants.
const (
	// Before authentication.
	StartupMessage  = "StartupMessage"
	SSLRequest      = "SSLRequest"
	GSSENCRequest   = "GSSENCRequest"
	CancelRequest   = "CancelRequest"
	PasswordMessage = "PasswordMessage"

	// Frontend.
	Query        = "Query"
	Parse        = "Parse"
	Bind         = "Bind"
	Execute      = "Execute"
	Describe     = "Describe"
	Close        = "Close"
	Sync         = "Sync"
	Flush        = "Flush"
	Terminate    = "Terminate"
	CopyData     = "CopyData"
	CopyDone     = "CopyDone"
	CopyFail     = "CopyFail"
	FunctionCall = "FunctionCall"

	// Backend.
	Authentication           = "Authentication"
	ParameterStatus          = "ParameterStatus"
	BackendKeyData           = "BackendKeyData"
	ReadyForQuery            = "ReadyForQuery"
	RowDescription           = "RowDescription"
	DataRow                  = "DataRow"
	CommandComplete          = "CommandComplete"
	ErrorResponse            = "ErrorResponse"
	NoticeResponse           = "NoticeResponse"
	NotificationResponse     = "NotificationResponse"
	ParseComplete            = "ParseComplete"
	BindComplete             = "BindComplete"
	CloseComplete            = "CloseComplete"
	NoData                   = "NoData"
	ParameterDescription     = "ParameterDescription"
	PortalSuspended          = "PortalSuspended"
	EmptyQueryResponse       = "EmptyQueryResponse"
	CopyInResponse           = "CopyInResponse"
	CopyOutResponse          = "CopyOutResponse"
	CopyBothResponse         = "CopyBothResponse"
	NegotiateProtocolVersion = "NegotiateProtocolVersion"
	FunctionCallResponse     = "FunctionCallResponse"
)

// ClientKinds names the message type bytes a frontend may send after authentication.
var ClientKinds = map[byte]string{
	'Q': Query, 'P': Parse, 'B': Bind, 'E': Execute, 'D': Describe,
	'C': Close, 'S': Sync, 'H': Flush, 'X': Terminate, 'd': CopyData,
	'c': CopyDone, 'f': CopyFail, 'F': FunctionCall,
}

// ServerKinds names the message type bytes a backend may send. 'R' is refined by
// AuthKinds.
var ServerKinds = map[byte]string{
	'R': Authentication, 'S': ParameterStatus, 'K': BackendKeyData, 'Z': ReadyForQuery,
	'T': RowDescription, 'D': DataRow, 'C': CommandComplete, 'E': ErrorResponse,
	'N': NoticeResponse, 'A': NotificationResponse, '1': ParseComplete, '2': BindComplete,
	'3': CloseComplete, 'n': NoData, 't': ParameterDescription, 's': PortalSuspended,
	'I': EmptyQueryResponse, 'G': CopyInResponse, 'H': CopyOutResponse, 'W': CopyBothResponse,
	'd': CopyData, 'c': CopyDone, 'v': NegotiateProtocolVersion, 'V': FunctionCallResponse,
}

// AuthKinds names Authentication messages by their code.
var AuthKinds = map[uint32]string{
	0: "AuthenticationOk", 2: "AuthenticationKerberosV5", 3: "AuthenticationCleartextPassword",
	5: "AuthenticationMD5Password", 7: "AuthenticationGSS", 8: "AuthenticationGSSContinue",
	9: "AuthenticationSSPI", 10: "AuthenticationSASL", 11: "AuthenticationSASLContinue",
	12: "AuthenticationSASLFinal",
}
