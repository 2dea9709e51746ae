// Package hydra tests tapline's token verification and the console's login
// against Ory Hydra, a certified OpenID provider: each test starts its own Hydra
// (in-memory store) with a login and consent app of its own. The binary comes from
// `integration/services.sh up hydra` (TAPLINE_HYDRA).
package hydra
