using Parrot.Parrot.Evaluation;

namespace Parrot.Parrot.Tests.Evaluation;

public class LanguageDetectorTests
{
    [TestCase("The answer is the red circle.", "en")]
    [TestCase("There are two stars in the image", "en")]
    [TestCase("答案是红色的圆。", "zh")]
    [TestCase("图中有两个星星", "zh")]
    [TestCase("A resposta é o círculo vermelho.", "pt")]
    [TestCase("Há duas estrelas na imagem", "pt")]
    [TestCase("الإجابة هي الدائرة الحمراء", "ar")]
    [TestCase("في الصورة نجمتان", "ar")]
    [TestCase("Cevap kırmızı daire.", "tr")]
    [TestCase("KIRMIZI DAİRE", "tr")]
    [TestCase("Resimde iki yıldız var", "tr")]
    [TestCase("Ответ: красный круг.", "ru")]
    [TestCase("На картинке две звезды", "ru")]
    [TestCase("答えは赤です", "ja")]
    [TestCase("Η απάντηση", "other")]
    [TestCase("The answer is 红色", "en")]
    [TestCase("Ok", null)]
    [TestCase("42", null)]
    public void DetectsTheLanguageOfAnAnswer(string text, string? expected) =>
        Assert.That(LanguageDetector.Detect(text), Is.EqualTo(expected));

    [TestCase("B", false)]
    [TestCase("(C).", false)]
    [TestCase("A, B", false)]
    [TestCase("3", false)]
    [TestCase("", false)]
    [TestCase("B. red", true)]
    [TestCase("红色", true)]
    [TestCase("a", true)] // lower-case "a" is not an option letter
    public void FreeFormAnswersCarryMoreThanAnOptionLetter(string prediction, bool expected) =>
        Assert.That(LanguageDetector.IsFreeForm(prediction, "ABCD"), Is.EqualTo(expected));

    [Test]
    public void FidelityCountsFreeFormAnswersInTheQuestionsLanguage()
    {
        var f = LanguageFidelity.Of(
        [
            ("A", "ABCD", "zh"),                   // a bare letter carries no language
            ("红色", "ABCD", "zh"),                 // in language
            ("The answer is red.", "ABCD", "zh"),  // English to a Chinese question: erosion
            ("Ok", "ABCD", "pt"),                  // undetermined
            ("Vermelho é a cor", "ABCD", "pt"),    // in language
        ]);
        Assert.That(f, Is.EqualTo(new LanguageFidelity(4, 2, 1)));
        Assert.That(f.Rate, Is.EqualTo(2 / 3.0));
        Assert.That(f.ToString(), Is.EqualTo("66.7% (2 of 3; 1 undetermined)"));
        Assert.That(new LanguageFidelity(0, 0, 0).Rate, Is.Null);
    }
}
