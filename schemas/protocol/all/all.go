// Package all registers every protocol tapline records. Import it (for its side
// effect) where sessions of any protocol are handled; adding a protocol adds its
// package here.
package all

import (
	_ "github.com/tapline/tapline/schemas/http"       // HTTP
	_ "github.com/tapline/tapline/schemas/kubernetes" // Kubernetes API
	_ "github.com/tapline/tapline/schemas/postgres"   // Postgres
	_ "github.com/tapline/tapline/schemas/ssh"        // SSH
)
