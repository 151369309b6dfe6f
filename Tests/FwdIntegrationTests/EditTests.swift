import Foundation
@testable import FwdCore
import Testing

/// `fwd edit` with a scripted $EDITOR: good edits are saved, broken ones never are.
@Suite(.serialized) struct EditTests {
    let base = "# mine\n[tunnels.wiki]\nhost = \"office\"\nlocal = \"8080:wiki.lan:80\"\n"

    /// An "editor" that replaces the file it is given with `text` and exits with `status`.
    func editor(_ f: FwdFixture, writing text: String?, status: Int = 0) throws -> [String: String?] {
        let source = f.dir + "/edited.toml"
        if let text { try FileSystem.writeAtomically(text, to: source) }
        let script = f.dir + "/editor.sh"
        try FileSystem.writeAtomically("#!/bin/sh\n\(text == nil ? "" : "cat \"\(source)\" > \"$1\"\n")exit \(status)\n", to: script, mode: 0o700)
        try FileSystem.makePrivateDirectory(f.dir + "/tmp")
        // "sh SCRIPT": $EDITOR may carry arguments. TMPDIR keeps the private copy where the test can see it.
        return ["EDITOR": "sh \(script)", "TMPDIR": f.dir + "/tmp"]
    }

    func leftovers(_ f: FwdFixture) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: f.dir + "/tmp")) ?? []
    }

    @Test func aValidEditReplacesTheConfigKeepingItsMode() async throws {
        try await FwdFixture.with { f in
            try FileSystem.writeAtomically(base, to: f.configPath, mode: 0o640)
            let edited = base + "\n[tunnels.socks]\nhost = \"office\"\ndynamic = \"1080\"\n"
            let run = try f.fwd(arguments: ["edit"], environment: try editor(f, writing: edited))
            #expect(run.ok, "\(run.stderr)")
            #expect(run.stdout.contains("Saved \(f.configPath) (2 tunnels"))
            #expect(FileSystem.read(f.configPath) == edited)
            #expect(FileSystem.mode(of: f.configPath) == 0o640)
            #expect(leftovers(f).isEmpty)
        }
    }

    /// The config is left as it was, and the broken version is kept where the message says (issue 21).
    @Test func aBrokenEditIsRefusedWithLocatedErrorsAndItsCopyKept() async throws {
        try await FwdFixture.with { f in
            try f.write(config: base)
            let run = try f.fwd(arguments: ["edit"], environment: try editor(f, writing: base + "lcoal = \"1:a:1\"\n"))
            #expect(run.status == .exited(1))
            #expect(run.stderr.contains("\(f.configPath):5:1: unknown key \"lcoal\""), "\(run.stderr)")
            #expect(run.stderr.contains("unchanged"))
            #expect(FileSystem.read(f.configPath) == base)
            let kept = try #require(leftovers(f).first)
            let copy = f.dir + "/tmp/" + kept + "/fwd.toml"
            #expect(run.stderr.contains("your edit is kept in ") && run.stderr.contains("\(kept)/fwd.toml"), "\(run.stderr)")
            #expect(FileSystem.read(copy) == base + "lcoal = \"1:a:1\"\n")
        }
    }

    @Test func noChangeOrAFailedEditorLeavesTheConfigAlone() async throws {
        try await FwdFixture.with { f in
            try f.write(config: base)
            let same = try f.fwd(arguments: ["edit"], environment: try editor(f, writing: nil))
            #expect(same.ok)
            #expect(same.stdout.contains("No changes"))
            let failed = try f.fwd(arguments: ["edit"], environment: try editor(f, writing: base + "# more\n", status: 3))
            #expect(failed.status == .exited(1))
            #expect(failed.stderr.contains("exited with status 3"))
            #expect(FileSystem.read(f.configPath) == base)
        }
    }

    @Test func editCreatesAMissingConfigPrivately() async throws {
        try await FwdFixture.with { f in
            let path = f.dir + "/new/fwd.toml"
            var env = try editor(f, writing: base)
            env["FWD_CONFIG"] = path
            let run = try f.fwd(arguments: ["edit"], environment: env)
            #expect(run.ok, "\(run.stderr)")
            #expect(FileSystem.read(path) == base)
            #expect(FileSystem.mode(of: path) == 0o600)
        }
    }
}
