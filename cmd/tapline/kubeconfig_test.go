package main

import (
	"encoding/base64"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestKubeconfig: the kubeconfig kubectl reads points at the target's path on
// the gateway, trusts the gateway's CA and sends the agent's token.
func TestKubeconfig(t *testing.T) {
	const ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	b, err := kubeconfig("https://gw:8443/prod", "prod", []byte(ca), "tok")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Current  string `json:"current-context"`
		Clusters []struct {
			Name    string
			Cluster struct {
				Server string
				CA     string `json:"certificate-authority-data"`
			}
		}
		Users []struct {
			Name string
			User struct{ Token string }
		}
		Contexts []struct {
			Name    string
			Context struct{ Cluster, User string }
		}
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	pem, _ := base64.StdEncoding.DecodeString(cfg.Clusters[0].Cluster.CA)
	if cfg.Current != "prod" || cfg.Clusters[0].Cluster.Server != "https://gw:8443/prod" || string(pem) != ca ||
		cfg.Users[0].User.Token != "tok" || cfg.Contexts[0].Context.Cluster != "prod" || cfg.Contexts[0].Context.User != "prod" {
		t.Fatalf("kubeconfig:\n%s", b)
	}
	if gatewayURL("0.0.0.0:8443") != "https://127.0.0.1:8443" {
		t.Error(gatewayURL("0.0.0.0:8443"))
	}
}
