# shellcheck shell=bash
# Headless Chromium (Debian chromium, chromium-driver) for the console's browser
# tests, which drive it from Go with chromedp. Nothing runs; each test starts its
# own browser with a fresh profile. Sourced by integration/services.sh.

browser_packages() {
	command -v chromium >/dev/null || echo chromium
	command -v chromedriver >/dev/null || echo chromium-driver
}

browser_up() {
	local bin
	bin=$(command -v chromium) || die "chromium is not installed (apt-get install chromium)"
	note "$("$bin" --version 2>/dev/null || echo chromium)"
	env_line TAPLINE_CHROMIUM "$bin" >"$STATE/parts/browser.env"
}

browser_down() { :; }

browser_status() {
	if command -v chromium >/dev/null; then
		echo "browser: $(chromium --version 2>/dev/null)"
	else
		echo "browser: chromium not installed"
	fi
}
