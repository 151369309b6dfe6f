import Foundation
import Testing
@testable import FwdCore

/// Where fwd finds its templates when installed: `PREFIX/share/fwd/templates` beside `PREFIX/bin/fwd`.
@Suite struct PresetsDirectoryTests {
    func withPrefix(_ body: (String) throws -> Void) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-presets-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/prefix/share/fwd/templates/presets", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/prefix/bin", withIntermediateDirectories: true)
        try FileSystem.writeAtomically("#!/bin/sh\n", to: dir + "/prefix/bin/fwd", mode: 0o755)
        try body(dir)
    }

    @Test func anInstalledBinaryFindsShareFwdTemplatesWithoutFwdTemplates() throws {
        try withPrefix { dir in
            let found = try Presets.directory(environment: [:], executable: dir + "/prefix/bin/fwd")
            #expect(found == dir + "/prefix/share/fwd/templates")
        }
    }

    /// Homebrew links PREFIX/bin/fwd to the keg's binary: the templates are the keg's, found through the link.
    @Test func aSymlinkedBinaryFindsTheTemplatesOfItsTarget() throws {
        try withPrefix { dir in
            try FileManager.default.createDirectory(atPath: dir + "/elsewhere/bin", withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: dir + "/elsewhere/bin/fwd", withDestinationPath: dir + "/prefix/bin/fwd")
            let found = try Presets.directory(environment: [:], executable: dir + "/elsewhere/bin/fwd")
            #expect(URL(fileURLWithPath: found).resolvingSymlinksInPath().path
                == URL(fileURLWithPath: dir + "/prefix/share/fwd/templates").resolvingSymlinksInPath().path)
        }
    }

    @Test func fwdTemplatesStillWinsAndAMissingDirectoryIsAnError() throws {
        try withPrefix { dir in
            try FileManager.default.createDirectory(atPath: dir + "/mine/presets", withIntermediateDirectories: true)
            #expect(try Presets.directory(environment: ["FWD_TEMPLATES": dir + "/mine"], executable: dir + "/prefix/bin/fwd") == dir + "/mine")
            #expect(throws: PresetError.self) {
                try Presets.directory(environment: [:], executable: dir + "/elsewhere/fwd")
            }
        }
    }
}
