using Parrot.Parrot.Evaluation;

namespace Parrot.Parrot.Tests.Evaluation;

/// <summary>
/// VLMEvalKit's matching (can_infer) and Parrot's model-side cleanup, rule by rule. Every expected letter was
/// worked out by hand from the reference code (vlmeval/utils/matching_util.py, vlmeval/vlm/parrot.py).
/// </summary>
public class AnswerExtractionTests
{
    private static readonly (char, string)[] Colours = [('A', "red"), ('B', "dark red"), ('C', "blue"), ('D', "green")];
    private static readonly (char, string)[] Arabic = [('A', "أحمر"), ('B', "أزرق")];
    private static readonly (char, string)[] Chinese = [('A', "红色"), ('B', "蓝色")];
    private static readonly (char, string)[] Turkish = [('A', "İstanbul"), ('B', "Ankara")];
    private static readonly (char, string)[] TwoOptions = [('A', "yes"), ('B', "no")];

    private static (char, string)[] OptionsOf(string set) => set switch
    {
        "colours" => Colours, "arabic" => Arabic, "chinese" => Chinese, "turkish" => Turkish, "two" => TwoOptions,
        _ => throw new ArgumentException(set),
    };

    // Rule 2: one option letter standing alone as a whitespace token, after .()[],:;!*#{} become spaces.
    [TestCase("colours", "A", 'A')]
    [TestCase("colours", "B.", 'B')]
    [TestCase("colours", "The answer is (C).", 'C')]
    [TestCase("colours", "Answer:A", 'A')]                    // ':' is replaced: tokens "Answer", "A"
    [TestCase("colours", "{D}!", 'D')]
    [TestCase("colours", "A A A", 'A')]                        // one letter, however often
    [TestCase("colours", "A\u3000is right", 'A')]              // the ideographic space splits like Python's str.split()
    [TestCase("colours", "A-B", 'Z')]                          // '-' is not replaced: one token "A-B"; no text matches
    [TestCase("colours", "A or B", 'Z')]                       // two letters: the letter rule gives up; no text matches
    [TestCase("colours", "A or B, I think it is blue", 'C')]   // two letters, then exactly one option text
    [TestCase("colours", "Dark", 'Z')]                         // a letter inside a word is not a token; "dark red" is not in "dark"
    [TestCase("colours", "I think it is a cat", 'Z')]          // "I" and "a" are no option letters
    [TestCase("colours", "b", 'Z')]                            // lower-case letters do not count
    [TestCase("two", "C", 'Z')]                                // not one of this question's letters
    // Fullwidth and other non-ASCII punctuation is not replaced.
    [TestCase("colours", "答案是 D。", 'Z')]                    // token "D。"
    [TestCase("colours", "答案是 D.", 'D')]
    [TestCase("colours", "（D）", 'Z')]                         // fullwidth parentheses stay
    [TestCase("colours", "D：green", 'D')]                      // fullwidth colon: no letter token, but the text "green" matches
    [TestCase("colours", "D：blue", 'C')]                       // …and the text decides, against the letter
    // 'Z' as a token with no option letter is an explicit 'Z' (the text rule is not tried).
    [TestCase("colours", "Z", 'Z')]
    [TestCase("colours", "Z. red", 'Z')]
    // Rule 3: exactly one option text, lower-cased, as a substring of the lower-cased answer.
    [TestCase("colours", "blue", 'C')]
    [TestCase("colours", "Because it is BLUE", 'C')]
    [TestCase("colours", "red", 'A')]                          // "dark red" is not in "red"
    [TestCase("colours", "It is dark red.", 'Z')]              // "red" and "dark red" both occur: two candidates
    [TestCase("colours", "green and blue", 'Z')]
    [TestCase("colours", "", 'Z')]
    // Rule 1: refusals (case-sensitive) → 'Z' even with a letter; a judge failure skips the letter rule only.
    [TestCase("colours", "Cannot determine the answer, maybe A", 'Z')]
    [TestCase("colours", "I'm sorry, but without the image provided I would say B", 'Z')]
    [TestCase("colours", "cannot determine the answer A", 'A')]
    [TestCase("colours", "Failed to obtain answer via API. A", 'Z')]
    [TestCase("colours", "Failed to obtain answer via API: blue", 'C')]
    // Arabic and Chinese answers.
    [TestCase("arabic", "أزرق", 'B')]
    [TestCase("arabic", "الإجابة هي أ", 'Z')]                  // the Arabic letter alif is not the option letter A
    [TestCase("arabic", "B) أزرق", 'B')]
    [TestCase("arabic", "A، B", 'B')]                          // the Arabic comma is not replaced: tokens "A،", "B"
    [TestCase("arabic", "اللون أحمر أو أزرق", 'Z')]
    [TestCase("chinese", "蓝色", 'B')]
    [TestCase("chinese", "答案:A", 'A')]
    [TestCase("chinese", "答案：A", 'Z')]                      // fullwidth colon: one token "答案：A"
    [TestCase("chinese", "选项B", 'Z')]
    [TestCase("chinese", "是红色还是蓝色", 'Z')]
    // Python's str.lower(): İ becomes "i̇" (i + U+0307), so a dotless-capital answer and option agree, "istanbul" does not.
    [TestCase("turkish", "İSTANBUL", 'A')]
    [TestCase("turkish", "istanbul", 'Z')]
    [TestCase("turkish", "ANKARA", 'B')]
    public void MatchesAsCanInfer(string set, string answer, char expected) =>
        Assert.That(AnswerExtraction.Extract(answer, OptionsOf(set)), Is.EqualTo(expected));

    private const string English = "Q?\nA. red\nB. dark red\nC. blue\nD. green\nAnswer with the option's letter from the given choices directly.";
    private const string OldChinese = "问题？\nA. 红色\nB. 蓝色\n请直接回答选项字母。";
    private const string Chinese_ = "问题？\nA. 红色\nB. 蓝色\n请直接用给定选项中的选项字母回答。";
    private const string Portuguese = "Q?\nA. red\nB. dark red\nC. blue\nD. green\nResponda diretamente com a letra da opção das escolhas dadas.";

    [TestCase(English, "A", "A")]
    [TestCase(English, "(B)", "B")]                                     // punctuation stripped from both ends
    [TestCase(English, "B. blue", "B")]                                 // first letter followed by punctuation
    [TestCase(English, " \nC \t", "C")]
    [TestCase(English, "The correct one is C", "C")]                    // last letter preceded by a space
    [TestCase(English, "I think B", "I")]                               // the first-letter rule takes "I"
    [TestCase(English, "My answer: D", "D")]                            // last-letter rule before the answer cut
    [TestCase(English, "The answer is option c, blue", "c, blue")]      // cut after "answer is", then after "option"
    [TestCase(English, "answer: Dark red", "Dark red")]                 // cut, then nothing more applies
    [TestCase(English, "...", "")]
    [TestCase(English, "Blue", "Blue")]                                 // 'B' followed by a letter: kept
    [TestCase(English, "İİ The answer is option blue", "ption blue")]   // Python finds the cut in the lower-cased text, where İ is two code points
    [TestCase(English, "The answer is 😀 B", "B")]
    [TestCase(OldChinese, "I think B", "I")]                            // the reference's other trigger
    [TestCase(Chinese_, "I think B", "I think B")]                      // the zh instruction actually used does not trigger it
    [TestCase(Portuguese, "I think B", "I think B")]
    [TestCase(Portuguese, "(B)", "(B)")]
    public void CleansUpOnlyAfterTheTriggeringInstructions(string prompt, string answer, string expected)
    {
        var cleaned = ParrotAnswerCleanup.Apply(prompt, answer);
        Assert.That(cleaned, Is.EqualTo(expected));
        Assert.That(ParrotAnswerCleanup.Apply(prompt, cleaned), Is.EqualTo(cleaned), "idempotent");
    }

    [TestCase("en", "I think B", 'Z')]              // cleaned to "I": no option
    [TestCase("pt", "I think B", 'B')]              // no cleanup: the letter B
    [TestCase("en", "B. blue", 'B')]
    [TestCase("en", "The answer is option c, blue", 'C')]
    [TestCase("en", "answer: Dark red", 'Z')]       // "red" and "dark red" both in the cleaned text
    [TestCase("en", "It is C", 'C')]
    [TestCase("zh", "I think B", 'B')]
    public void ScoresRawAnswersWithCleanupThenMatching(string language, string raw, char expected)
    {
        var q = new MultipleChoiceQuestion("Q?", null, Colours, language);
        Assert.That(q.Extract(raw), Is.EqualTo(expected));
    }

    [Test]
    public void ACjkCharacterInAnyQuestionSelectsTheChineseInstruction()
    {
        var en = new MultipleChoiceQuestion("What does 猫 mean?", null, [('A', "cat"), ('B', "dog")], "en");
        Assert.That(en.Prompt(), Does.EndWith("\n请直接用给定选项中的选项字母回答。"));
        Assert.That(ParrotAnswerCleanup.AppliesTo(en.Prompt()), Is.False);
        Assert.That(en.Extract("I think B"), Is.EqualTo('B'));
        var pt = new MultipleChoiceQuestion("Q?", "dica", [('A', "gato"), ('B', "cão 犬")], "pt");
        Assert.That(pt.Prompt(), Does.EndWith("\n请直接用给定选项中的选项字母回答。"));
        var plain = new MultipleChoiceQuestion("Q?", null, [('A', "cat"), ('B', "dog")], "en");
        Assert.That(ParrotAnswerCleanup.AppliesTo(plain.Prompt()), Is.True);
    }
}
