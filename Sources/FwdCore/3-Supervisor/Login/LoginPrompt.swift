import Foundation

/// What ssh is asking for, read from its prompt text (OpenSSH 9.2: sshconnect2.c, sshconnect.c). This is the
/// one place that looks at prompt text; everything else matches on the case.
package enum LoginPromptKind: String, Sendable, Codable, CaseIterable {
    /// `user@host's password: ` (also the old/new password prompts of an expired password).
    case password
    /// `Enter passphrase for key '/path': `
    case keyPassphrase
    /// A keyboard-interactive prompt from the server (one-time code, PAM password, Duo…): `(user@host) TEXT`.
    case keyboardInteractive
    /// The host-key question: `The authenticity of host … Are you sure you want to continue connecting
    /// (yes/no/[fingerprint])? `, its retry `Please type 'yes', 'no' or the fingerprint: `, and the
    /// `(yes/no)? ` question about a key known under another address.
    case hostKey
    /// Anything else (a security key PIN, a ControlMaster=ask confirmation, a notice).
    case other

    package static func classify(_ text: String) -> LoginPromptKind {
        let lastLine = text.split(separator: "\n", omittingEmptySubsequences: false).last.map(String.init) ?? text
        if lastLine.hasPrefix("Are you sure you want to continue connecting (yes/no")
            || lastLine.hasPrefix("Please type 'yes', 'no'") {
            return .hostKey
        }
        if text.hasPrefix("Enter passphrase for key '") { return .keyPassphrase }
        // Keyboard-interactive prompts are "(%s@%s) %s"; PAM info lines before the prompt are inside the text.
        if text.hasPrefix("("), let close = text.firstIndex(of: ")"), text[text.startIndex..<close].contains("@") {
            return .keyboardInteractive
        }
        if lastLine.hasSuffix("'s password: ") || lastLine.hasSuffix("'s old password: ")
            || lastLine.hasSuffix("'s new password: ") {
            return .password
        }
        return .other
    }

    /// What a person must provide, for messages ("needs a password").
    package var noun: String {
        switch self {
        case .password: "a password"
        case .keyPassphrase: "a key passphrase"
        case .keyboardInteractive: "a one-time code or other answer for the server"
        case .hostKey: "a decision on the server's host key"
        case .other: "an answer"
        }
    }
}

/// The `SSH_ASKPASS_PROMPT` hint ssh sets for the askpass program (readpass.c).
package enum AskpassHint: String, Sendable, Codable {
    /// Not set: an answer is read from stdout.
    case answer = ""
    /// `confirm`: a yes/no question (ask_permission, e.g. ControlMaster=ask); an empty answer or "yes" allows.
    case confirm
    /// `none`: a notice only ("Confirm user presence for key…"); ssh discards stdout and ends askpass with SIGTERM.
    case notice = "none"
}

/// One question from one ssh, as the relay hands it on.
package struct LoginPrompt: Sendable, Equatable {
    /// Unique within one relay.
    package let id: Int
    /// Exactly what ssh passed as argv[1], newlines and trailing space included.
    package let text: String
    package let kind: LoginPromptKind
    package let hint: AskpassHint
    /// ssh's stderr written since the previous prompt (or since the master started): keyboard-interactive
    /// instructions, PAM messages after a failed answer, "Permission denied, please try again.".
    package let messages: String
    /// Whether the answer may be shown while typed. ssh gives askpass no echo flag (readpass.c passes only the
    /// prompt and the hint), so a keyboard-interactive prompt the server sent with echo on is indistinguishable
    /// here; only ssh's own yes/no questions, which ssh reads with echo on, are shown.
    package var echo: Bool { kind == .hostKey || hint == .confirm }

    package init(id: Int, text: String, hint: AskpassHint, messages: String = "") {
        self.id = id
        self.text = text
        self.kind = LoginPromptKind.classify(text)
        self.hint = hint
        self.messages = messages
    }
}

/// What a relay reports.
package enum AskpassEvent: Sendable, Equatable {
    case prompt(LoginPrompt)
    /// The prompt no longer needs an answer: the asking ssh (or its askpass) exited, or the relay closed.
    case withdrawn(Int)
}
