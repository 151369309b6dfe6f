import Foundation
import Testing
@testable import FwdCore

/// The host aliases offered at `fwd add --host <TAB>`: what a user could type after `ssh`.
@Suite struct SSHConfigAliasesTests {
    @Test func literalHostNamesOnlyNoPatterns() {
        let text = """
        # Host commented
        Host office bastion
            HostName a.example.com
        Host *.corp web?? !blocked
        host=lower
        Host "quoted name" plain # trailing comment
        Match host x
          Host indented
        Include extra.conf ~/other/*.conf
        """
        let parsed = SSHConfigAliases.parse(text)
        #expect(parsed.aliases == ["office", "bastion", "lower", "quoted name", "plain", "indented"])
        #expect(parsed.includes == ["extra.conf", "~/other/*.conf"])
    }

    @Test func includesAreFollowedRelativeToDotSSHAndGlobbed() throws {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-aliases-\(UUID().uuidString.prefix(6))").path
        defer { try? FileManager.default.removeItem(atPath: home) }
        try FileSystem.makePrivateDirectory(home + "/.ssh/conf.d")
        try FileSystem.writeAtomically("Host main\nInclude conf.d/*.conf\nInclude ~/.ssh/config\nInclude /nonexistent\n", to: home + "/.ssh/config")
        try FileSystem.writeAtomically("Host b-host main\n", to: home + "/.ssh/conf.d/b.conf")
        try FileSystem.writeAtomically("Host a-host\n", to: home + "/.ssh/conf.d/a.conf")
        try FileSystem.writeAtomically("Host skipped\n", to: home + "/.ssh/conf.d/fwd.conf")
        let aliases = SSHConfigAliases.read(path: home + "/.ssh/config", home: home, skipping: [home + "/.ssh/conf.d/fwd.conf"])
        // Sorted glob order, no duplicates, no loop through the file including itself.
        #expect(aliases == ["main", "a-host", "b-host"])
        #expect(SSHConfigAliases.read(path: home + "/missing", home: home).isEmpty)
    }
}
