import ArgumentParser
import Foundation
import FwdCore

struct EditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edit",
        abstract: "Edit the config in $EDITOR; a version that does not parse is never saved.",
        discussion: """
        You edit a private copy. On save it is checked like every fwd command checks the config; if it is \
        broken, the errors are printed with their line and column and, on a terminal, you can edit again. \
        Otherwise (or if you decline) the config stays as it was and fwd exits 1. A good version replaces \
        the config atomically. $EDITOR may carry arguments (EDITOR="code -w"); without it, vi.
        """
    )

    static let starter = """
    # fwd tunnels: each forward is written like an ssh -L, -R or -D argument. `fwd add --help` has more.
    # [tunnels.wiki]
    # host = "office"
    # local = "8080:wiki.lan:80"

    """

    func run() async throws {
        let path = Context.current().paths.config
        let original = FileSystem.read(path)
        if original == nil && FileSystem.exists(path) { throw ConfigError.io(path: path, reason: "cannot be read") }
        let editor = ProcessInfo.processInfo.environment["EDITOR"].flatMap { $0.isEmpty ? nil : $0 } ?? "vi"

        // A private directory of its own (mkdtemp: 0700), so the copy keeps the file's name for the editor.
        let pattern = FileManager.default.temporaryDirectory.path + "/fwd-edit-XXXXXX"
        var template = Array(pattern.utf8CString)
        guard let dir = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }).map({ String(cString: $0) }) else {
            throw FileSystemError.failed(path: pattern, action: "create", errno: errno)
        }
        let copy = dir + "/" + (path as NSString).lastPathComponent
        var keepCopy = false
        defer { if !keepCopy { try? FileManager.default.removeItem(atPath: dir) } }
        let before = original ?? Self.starter
        try FileSystem.writeAtomically(before, to: copy)

        while true {
            let status = try Self.runEditor(editor, file: copy)
            guard status == 0 else {
                throw ConfigError.refused("the editor (`\(editor)`) exited with status \(status); \(path) is unchanged")
            }
            let text = FileSystem.read(copy) ?? ""
            if text == before {
                print("No changes; \(path) is as it was.")
                return
            }
            let config: FwdConfig
            do {
                config = try ConfigLoader.parse(text, path: path)
            } catch {
                FileHandle.standardError.write(Data("\(error)\n".utf8))
                if isatty(STDIN_FILENO) == 1, Self.ask("Edit again? [Y/n] ") { continue }
                keepCopy = true
                throw ConfigError.refused("\(path) is unchanged; your edit is kept in \(copy)")
            }
            // Someone (`fwd add`, another editor) changed the file meanwhile: keep both rather than lose theirs.
            if FileSystem.read(path) != original {
                keepCopy = true
                throw ConfigError.refused("\(path) changed while you were editing; it is left as it is, and your version is in \(copy)")
            }
            try ConfigEditor.save(text, to: path)
            await Context.current().refreshSSHConfig()
            print("Saved \(path) (\(config.tunnels.count) tunnels, \(config.groups.count) groups).")
            return
        }
    }

    static func ask(_ question: String) -> Bool {
        FileHandle.standardError.write(Data(question.utf8))
        guard let answer = readLine()?.trimmingCharacters(in: .whitespaces).lowercased() else { return false }
        return answer.isEmpty || answer == "y" || answer == "yes"
    }

    /// Runs the editor on this terminal and waits for it. Through /bin/sh, as git does, because $EDITOR may
    /// carry arguments; the file name goes in as "$1", never into the script text.
    static func runEditor(_ editor: String, file: String) throws -> Int32 {
        let argv = ["/bin/sh", "-c", "\(editor) \"$1\"", "sh", file]
        // Ctrl-C while the editor runs is for the editor, not for fwd.
        let oldInt = signal(SIGINT, SIG_IGN)
        let oldQuit = signal(SIGQUIT, SIG_IGN)
        defer {
            signal(SIGINT, oldInt)
            signal(SIGQUIT, oldQuit)
        }
        let editorProcess: ChildProcess
        do {
            editorProcess = try ChildProcess(argv, outputPath: ChildProcess.inheritOutput, placement: .terminal)
        } catch {
            throw ConfigError.refused("cannot start the editor `\(editor)`: \(error)")
        }
        switch editorProcess.waitExit(timeout: .infinity) {
        case .exited(let code): return code
        case .signaled(let sig): return 128 + sig
        case nil: return 1
        }
    }
}
