using Parrot.Autograd;
using Parrot.Parrot.Evaluation;
using Parrot.Parrot.Model;
using Parrot.Parrot.Tests.Text;
using Parrot.Parrot.Tests.Training;
using Parrot.Parrot.Text;
using Parrot.Tensors;

namespace Parrot.Parrot.Tests.Evaluation;

public class SimpleMcqEvaluatorTests
{
    private static McqItem Item(string dir, string language = "en")
    {
        var png = Path.Combine(dir, "q.png");
        TrainingFixtures.WritePng(png, 200, 30, 30);
        var q = new MultipleChoiceQuestion("What colour is the square?", null, [('A', "red"), ('B', "green"), ('C', "blue")], language);
        return new McqItem(0, "color", q, 'A', Convert.ToBase64String(File.ReadAllBytes(png)));
    }

    [Test]
    public void CachedGreedyAnswerEqualsRecomputationAndRoutingEqualsTheMoeOfThePrompt()
    {
        var tokenizer = TokenizerFixtures.Build(TrainingFixtures.TokenizerJson());
        var chat = new ChatMl(tokenizer);
        using var model = new ParrotForCausalLM(TrainingFixtures.Config(useMoe: true), seed: 11);
        using var evaluator = new SimpleMcqEvaluator(tokenizer, TrainingFixtures.ToyTower, TrainingFixtures.Preprocessor, padToSquare: true, maxNewTokens: 6);
        var item = Item(TrainingFixtures.TempDir());
        var answer = evaluator.Answer(model, item);

        // Independent reference: the full forward over prompt + generated tokens at every step, no cache.
        using var scope = TensorScope.Begin();
        using var ng = Graph.NoGrad();
        var pixels = TrainingFixtures.Preprocessor.Process(global::Parrot.Parrot.Vision.ImageLoader.Load(item.ImageBytes()), true).Unsqueeze(0);
        var features = TrainingFixtures.ToyTower(pixels);
        var ids = chat.BuildQuery(item.Question.Prompt(), withImage: true).ToList();
        int promptLength = ids.Count;
        for (int step = 0; step < 6; step++)
        {
            var logits = model.Forward([new ParrotSample(ids.ToArray(), null, 0)], features, int.MaxValue).Logits.Value;
            var last = logits.Select(0, 0).Select(0, logits.Dim(1) - 1);
            int next = (int)last.ArgMax(-1).ToLongArray()[0];
            ids.Add(next);
            if (next == chat.ImEndId) break;
        }
        var expected = tokenizer.Decode(ids.Skip(promptLength).ToArray(), skipSpecialTokens: true).Trim();
        Assert.That(answer.Response, Is.EqualTo(expected));
        Assert.That(answer.Predicted, Is.EqualTo(item.Question.Extract(expected)));

        // Routing: softmax(gate(softmax(cls·Tᵀ/√H)·T)) with cls the projected CLS and T the prompt's text embeddings.
        var prompt = chat.BuildQuery(item.Question.Prompt(), withImage: true);
        var text = Variable.Embedding(model.Model.EmbedTokens.Weight, Tensor.FromArray(prompt.Where(t => t != ParrotSample.ImageToken).Select(t => (long)t).ToArray()));
        var projected = model.Model.Projector.Forward(new Variable(features)).Select(0, 0);
        var weights = model.Model.Moe.RoutingWeights(projected, text).Value.ToDoubleArray();
        Assert.That(answer.Routing, Is.Not.Null);
        Assert.That(answer.Routing!, Is.EqualTo(weights).Within(1e-6));
        Assert.That(answer.Routing!.Sum(), Is.EqualTo(1).Within(1e-6));

        model.MoeEnabled = false;
        Assert.That(evaluator.Answer(model, item).Routing, Is.Null, "no routing without the MoE");
    }

    [Test]
    public void LoadsTsvQuestionsResolvingImageReferencesAndRejectsBadAnswers()
    {
        var dir = TrainingFixtures.TempDir();
        var png = Path.Combine(dir, "q.png");
        TrainingFixtures.WritePng(png, 10, 200, 10);
        var b64 = Convert.ToBase64String(File.ReadAllBytes(png));
        string[] cols = ["index", "image", "question", "A", "B", "C", "D", "answer", "category"];
        var path = Path.Combine(dir, "mmmb_pt.tsv");
        TsvTable.Write(path, cols, [
            new[] { "0", b64, "Qual é a cor?", "Verde", "Azul", "Vermelho", "", "A", "color" },
            new[] { "1", "0", "Há um quadrado?", "Sim", "Não", "", "", "B", "existence" },
        ]);
        var items = McqItems.Load(path, "pt");
        Assert.That(items, Has.Count.EqualTo(2));
        Assert.That(items[0].Question.Options.Select(o => o.Letter), Is.EqualTo(new[] { 'A', 'B', 'C' }));
        Assert.That(items[1].Question.Options, Has.Count.EqualTo(2));
        Assert.That(items[1].ImageBase64, Is.EqualTo(b64), "a short image value is the index of the row whose image it reuses");
        Assert.That(items[1].Answer, Is.EqualTo('B'));
        Assert.That(items[1].Category, Is.EqualTo("existence"));
        Assert.That(items[0].Question.Prompt(), Does.EndWith(BenchmarkLanguages.Instructions["pt"]));

        TsvTable.Write(path, cols, [new[] { "7", b64, "Há um quadrado?", "Sim", "Não", "", "", "C", "existence" }]);
        Assert.That(() => McqItems.Load(path, "pt"), Throws.TypeOf<InvalidDataException>().With.Message.Contains("index 7").And.Message.Contains("'C'"));
        TsvTable.Write(path, cols, [new[] { "3", "9", "Há um quadrado?", "Sim", "Não", "", "", "A", "existence" }]);
        Assert.That(() => McqItems.Load(path, "pt"), Throws.TypeOf<InvalidDataException>().With.Message.Contains("index 3"));
    }
}
