import Testing
@testable import FwdCore

@Suite struct ValidationTests {
    @Test(arguments: ["wiki", "intranet-wiki", "db.prod", "a_b", "0day"])
    func goodNames(_ name: String) {
        #expect(Validation.nameProblem(name) == nil)
    }

    @Test(arguments: ["", "-wiki", ".hidden", "a b", "a\nb", "/etc/passwd", "../x", "a/b", "ä", String(repeating: "a", count: 65)])
    func badNames(_ name: String) {
        #expect(Validation.nameProblem(name) != nil)
    }

    @Test(arguments: ["office", "a.example.com", "alice@a.example.com", "alice@a.example.com:2222", "[::1]:22", "192.0.2.1", "fe80::1%eth0"])
    func goodHosts(_ host: String) {
        #expect(Validation.hostProblem(host) == nil)
    }

    @Test(arguments: ["-oProxyCommand=sh", "a b", "a\nProxyCommand sh", "a\tb", "a#b", "a\"b", "$(reboot)", "a;b", ""])
    func badHosts(_ host: String) {
        #expect(Validation.hostProblem(host) != nil)
    }

    @Test(arguments: ["ProxyCommand", "proxycommand", "LocalCommand", "PermitLocalCommand", "Include", "Match", "Host",
                      "KnownHostsCommand", "RemoteCommand", "StrictHostKeyChecking", "UserKnownHostsFile", "PKCS11Provider",
                      "ControlPath", "LocalForward", "Compression=yes", "Bad Name", "1abc", ""])
    func forbiddenOrMalformedOptionNames(_ name: String) {
        #expect(Validation.optionNameProblem(name) != nil)
    }

    @Test func allowedOptions() {
        #expect(Validation.optionNameProblem("Compression") == nil)
        #expect(Validation.optionValueProblem("Compression", "yes") == nil)
        #expect(Validation.optionValueProblem("SendEnv", "LANG LC_ALL") == nil)
    }

    @Test(arguments: ["yes\nProxyCommand sh -c x", "yes\rLocalCommand x", "\"yes\"", "yes # c", "-x", "", "a=b", "x\\y"])
    func smuggledOptionValues(_ value: String) {
        #expect(Validation.optionValueProblem("Compression", value) != nil)
    }

    @Test func injectionThroughConfigIsRejected() {
        let attempts = [
            // A newline inside a value would start a new ssh_config directive.
            "[hosts.h]\nhostname = \"a\\nProxyCommand touch /tmp/pwned\"\n",
            "[hosts.h]\nuser = \"a\\nLocalCommand x\"\n",
            "[hosts.h]\noptions = { ProxyCommand = \"sh -c x\" }\n",
            "[hosts.h]\noptions = { Compression = \"yes\\nInclude /tmp/evil\" }\n",
            "[hosts.h]\noptions = { \"Compression yes\\nLocalCommand\" = \"x\" }\n",
            "[hosts.h]\nidentity = \"/k\\nProxyCommand x\"\n",
            "[hosts.h]\njump = \"-oProxyCommand=x\"\n",
            "[tunnels.a]\nhost = \"-oProxyCommand=x\"\nlocal = \"8080:a:80\"\n",
            "[tunnels.a]\nhost = \"h\"\nlocal = \"8080:a:80\\n    LocalCommand x\"\n",
            "[tunnels.\"a\\nHost *\"]\nhost = \"h\"\nlocal = \"8080:a:80\"\n",
            "[tunnels.\"/etc/passwd\"]\nhost = \"h\"\nlocal = \"8080:a:80\"\n",
            "[tunnels.a]\nhost = \"h\"\nlocal = \"/tmp/../etc/x.sock:a:80\"\nprobe=\"none\"\n",
        ]
        for text in attempts {
            #expect(throws: ConfigError.self, "\(text)") { try ConfigLoader.parse(text, path: "f") }
        }
    }

    @Test func printableShowsControlCharacters() {
        #expect(Validation.printable("a\nb\u{1b}") == "a\\nb\\u{1b}")
    }
}
