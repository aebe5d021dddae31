import { describe, expect, it } from "vitest";
import { aesCmac, md4, rc4, smb3Kdf } from "../../server/remotes/smb/crypto.js";
import { authenticateMessage, negotiateMessage, ntowfv2 } from "../../server/remotes/smb/ntlm.js";

/** The primitives of the SMB client against their published test vectors. */

const hex = (text: string) => Buffer.from(text.replace(/\s+/g, ""), "hex");

describe("SMB client primitives", () => {
  it("MD4 matches RFC 1320", () => {
    expect(md4(Buffer.from("")).toString("hex")).toBe("31d6cfe0d16ae931b73c59d7e0c089c0");
    expect(md4(Buffer.from("abc")).toString("hex")).toBe("a448017aaf21d8525fc10ae87aa6729d");
    const digits = "1234567890".repeat(8);
    expect(md4(Buffer.from(digits)).toString("hex")).toBe("e33b4ddc9c38f2199c3e7b164fcc0536");
  });

  it("RC4 matches the classic vector", () => {
    expect(rc4(Buffer.from("Key"), Buffer.from("Plaintext")).toString("hex")).toBe("bbf316e8d940af0ad3");
  });

  it("AES-CMAC matches RFC 4493, whatever the split of the input", () => {
    const key = hex("2b7e151628aed2a6abf7158809cf4f3c");
    const message = hex(`6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51
      30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710`);
    expect(aesCmac(key, [Buffer.alloc(0)]).toString("hex")).toBe("bb1d6929e95937287fa37d129b756746");
    expect(aesCmac(key, [message.subarray(0, 16)]).toString("hex")).toBe("070a16b46b4d4144f79bdd9dd04a287c");
    expect(aesCmac(key, [message.subarray(0, 7), message.subarray(7, 40)]).toString("hex")).toBe("dfa66747de9ae63030ca32611497c827");
    expect(aesCmac(key, [message.subarray(0, 33), message.subarray(33)]).toString("hex")).toBe("51f0bebf7e3b9d92fc49741779363cfe");
  });

  it("the SMB 3 KDF gives 16 bytes that depend on label and context", () => {
    const key = Buffer.alloc(16, 1);
    const a = smb3Kdf(key, Buffer.from("SMB2AESCMAC\0"), Buffer.from("SmbSign\0"));
    expect(a).toHaveLength(16);
    expect(a.equals(smb3Kdf(key, Buffer.from("SMB2AESCMAC\0"), Buffer.from("SmbRpc\0")))).toBe(false);
  });

  it("NTLMv2 matches MS-NLMP 4.2.4", () => {
    expect(ntowfv2("Password", "User", "Domain").toString("hex")).toBe("0c868a403bfd7a93a3001ef22ef02e3f");
    // The CHALLENGE_MESSAGE of MS-NLMP 4.2.4.3, with its target info (NbDomainName "Domain", NbComputerName "Server").
    const targetInfo = hex("02000c0044006f006d00610069006e0001000c0053006500720076006500720000000000");
    const challenge = Buffer.alloc(56 + targetInfo.length);
    challenge.write("NTLMSSP\0", 0, "latin1");
    challenge.writeUInt32LE(2, 8);
    challenge.writeUInt32LE(0xe28a8233, 20);
    hex("0123456789abcdef").copy(challenge, 24);
    challenge.writeUInt16LE(targetInfo.length, 40);
    challenge.writeUInt16LE(targetInfo.length, 42);
    challenge.writeUInt32LE(56, 44);
    targetInfo.copy(challenge, 56);
    const randoms = [hex("aaaaaaaaaaaaaaaa"), hex("55555555555555555555555555555555")];
    const { message, sessionKey } = authenticateMessage(
      negotiateMessage(),
      challenge,
      { username: "User", password: "Password", domain: "Domain" },
      () => randoms.shift() as Buffer,
      () => Buffer.alloc(8),
    );
    const field = (index: number) => {
      const at = 12 + index * 8;
      return message.subarray(message.readUInt32LE(at + 4), message.readUInt32LE(at + 4) + message.readUInt16LE(at));
    };
    expect(field(0).toString("hex")).toBe("86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa");
    expect(field(1).subarray(0, 16).toString("hex")).toBe("68cd0ab851e51c96aabc927bebef6a1c");
    expect(field(5).toString("hex")).toBe("c5dad2544fc9799094ce1ce90bc9d03e");
    expect(sessionKey.toString("hex")).toBe("55555555555555555555555555555555");
    expect(field(3).toString("utf16le")).toBe("User");
  });
});
