# shellcheck shell=bash
# OpenSSH server (Debian's package) for the integration tests: own config, own
# host key, own loopback port and pid file; runs as root so that it can switch
# to the target user. Sourced by integration/services.sh.

SSH_DIR=$STATE/ssh
SSH_TARGET_USER=tapline-target

ssh_packages() {
	[[ -x /usr/sbin/sshd ]] || echo openssh-server
	command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || echo openssh-client
	command -v sshpass >/dev/null || echo sshpass
	command -v sudo >/dev/null && command -v visudo >/dev/null || echo sudo
}

ssh_sftp_server() {
	local p
	for p in /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server /usr/libexec/sftp-server; do
		[[ -x $p ]] && {
			echo "$p"
			return
		}
	done
	echo internal-sftp
}

# ssh_target_user: the local account tests log in as (with the gateway's key
# only: the config allows no password login). Its password is for sudo.
ssh_target_user() {
	if ! id "$SSH_TARGET_USER" >/dev/null 2>&1; then
		log "creating user $SSH_TARGET_USER"
		useradd --create-home --shell /bin/bash --comment "tapline integration tests" "$SSH_TARGET_USER" ||
			die "useradd $SSH_TARGET_USER failed"
	fi
	ssh_sudo
	local home
	home=$(getent passwd "$SSH_TARGET_USER" | cut -d: -f6)
	[[ -d $home ]] || {
		mkdir -p "$home"
		chown "$SSH_TARGET_USER:" "$home"
	}
	install -d -m 700 -o "$SSH_TARGET_USER" -g "$(id -gn "$SSH_TARGET_USER")" "$home/.ssh"
	local ak=$home/.ssh/authorized_keys pub
	pub=$(cat "$SSH_DIR/gateway_key.pub")
	touch "$ak"
	grep -qxF "$pub" "$ak" || echo "$pub" >>"$ak"
	chown "$SSH_TARGET_USER:" "$ak"
	chmod 600 "$ak"
}

# SSH_SUDO_FILE holds the target account's sudo password: one per host, not
# per services state, because the account is the host's (two checkouts'
# services share it).
SSH_SUDO_FILE=/var/lib/tapline-test/ssh-sudo-password

# ssh_sudo: the target account may run /usr/bin/id as root with its password,
# asked every time (timestamp_timeout=0), so that tests type at a real sudo
# prompt. Nothing else: no other command, no NOPASSWD.
ssh_sudo() {
	if [[ ! -s $SSH_SUDO_FILE ]]; then
		install -d -m 700 "$(dirname "$SSH_SUDO_FILE")"
		(umask 077 && head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 20 >"$SSH_SUDO_FILE")
	fi
	echo "$SSH_TARGET_USER:$(cat "$SSH_SUDO_FILE")" | chpasswd || die "setting the password of $SSH_TARGET_USER failed"
	local rule=$SSH_DIR/sudoers
	printf 'Defaults:%s timestamp_timeout=0\n%s ALL=(root) /usr/bin/id\n' "$SSH_TARGET_USER" "$SSH_TARGET_USER" >"$rule"
	visudo -qcf "$rule" || die "the sudo rule $rule does not parse (visudo -cf $rule)"
	cmp -s "$rule" "/etc/sudoers.d/$SSH_TARGET_USER" || install -m 440 "$rule" "/etc/sudoers.d/$SSH_TARGET_USER"
}

ssh_keys() {
	mkdir -p "$SSH_DIR"
	chmod 700 "$SSH_DIR"
	[[ -f $SSH_DIR/ssh_host_ed25519_key ]] ||
		ssh-keygen -q -t ed25519 -N '' -C "tapline-test-host" -f "$SSH_DIR/ssh_host_ed25519_key"
	[[ -f $SSH_DIR/gateway_key ]] ||
		ssh-keygen -q -t ed25519 -N '' -C "tapline-gateway" -f "$SSH_DIR/gateway_key"
}

ssh_write_config() {
	local port=$1
	cat >"$SSH_DIR/sshd_config" <<EOF
# Written by tapline integration/scripts/ssh.sh; rewritten at every start.
Port $port
ListenAddress 127.0.0.1
HostKey $SSH_DIR/ssh_host_ed25519_key
PidFile $SSH_DIR/sshd.pid
AuthorizedKeysFile .ssh/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers $SSH_TARGET_USER
UsePAM no
StrictModes yes
PrintMotd no
PrintLastLog no
UseDNS no
AllowTcpForwarding yes
AllowAgentForwarding yes
X11Forwarding no
MaxStartups 100:30:200
MaxSessions 50
LogLevel VERBOSE
Subsystem sftp $(ssh_sftp_server)
EOF
}

ssh_login_ok() {
	ssh -F none -i "$SSH_DIR/gateway_key" -p "$1" -o BatchMode=yes -o IdentitiesOnly=yes \
		-o UserKnownHostsFile="$SSH_DIR/known_hosts" -o StrictHostKeyChecking=yes -o ConnectTimeout=2 \
		"$SSH_TARGET_USER@127.0.0.1" true
}

ssh_up() {
	ssh_keys
	ssh_target_user
	local port old reused=""
	old=$(cat "$SSH_DIR/port" 2>/dev/null || true)
	if pid_alive "$SSH_DIR/sshd.pid" && [[ -n $old ]] && port_listening "$old"; then
		port=$old
		reused=1
		note "sshd already running on 127.0.0.1:$port (pid $(pid_of "$SSH_DIR/sshd.pid"))"
	else
		stop_pidfile sshd "$SSH_DIR/sshd.pid" 10
		port=$(pick_port "$old")
		echo "$port" >"$SSH_DIR/port"
		ssh_write_config "$port"
		mkdir -p /run/sshd
		chmod 755 /run/sshd
		/usr/sbin/sshd -t -f "$SSH_DIR/sshd_config" >"$SSH_DIR/sshd-check.log" 2>&1 ||
			die "sshd rejects $SSH_DIR/sshd_config; see $SSH_DIR/sshd-check.log"
		log "starting sshd on 127.0.0.1:$port"
		echo "---- start $(date -Is) port $port" >>"$SSH_DIR/sshd.log"
		# -E: log to a file; sshd daemonizes and writes PidFile itself.
		run_detached /usr/sbin/sshd -f "$SSH_DIR/sshd_config" -E "$SSH_DIR/sshd.log" ||
			die "sshd failed to start; see $SSH_DIR/sshd.log"
		wait_until 20 "sshd on 127.0.0.1:$port" "$SSH_DIR/sshd.log" - port_listening "$port"
	fi
	printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1-2 "$SSH_DIR/ssh_host_ed25519_key.pub")" >"$SSH_DIR/known_hosts"
	chmod 644 "$SSH_DIR/known_hosts"
	# A real login proves the key, the account and the config; skipped for a
	# server that was already running (it passed this when it started).
	[[ -n $reused ]] || wait_until 20 "ssh login as $SSH_TARGET_USER on 127.0.0.1:$port" "$SSH_DIR/sshd.log" - ssh_login_ok "$port"
	{
		env_line TAPLINE_SSH_HOST 127.0.0.1
		env_line TAPLINE_SSH_PORT "$port"
		env_line TAPLINE_SSH_USER "$SSH_TARGET_USER"
		env_line TAPLINE_SSH_KEY "$SSH_DIR/gateway_key"
		env_line TAPLINE_SSH_KNOWN_HOSTS "$SSH_DIR/known_hosts"
		env_line TAPLINE_SSH_HOST_PUBKEY "$(cut -d' ' -f1-2 "$SSH_DIR/ssh_host_ed25519_key.pub")"
		env_line TAPLINE_SSH_LOG "$SSH_DIR/sshd.log"
		env_line TAPLINE_SSH_SUDO_PASSWORD "$(cat "$SSH_SUDO_FILE")"
	} >"$STATE/parts/ssh.env"
}

ssh_down() {
	stop_pidfile sshd "$SSH_DIR/sshd.pid" 10
}

ssh_status() {
	if pid_alive "$SSH_DIR/sshd.pid"; then
		echo "sshd: running, pid $(pid_of "$SSH_DIR/sshd.pid"), 127.0.0.1:$(cat "$SSH_DIR/port"), log $SSH_DIR/sshd.log"
	else
		echo "sshd: stopped"
	fi
}
