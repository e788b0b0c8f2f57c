using System.Globalization;
using Parrot.Parrot.Text;

namespace Parrot.Parrot.Data.World;

/// <summary>Builds a <see cref="WorldData"/> from options: scenes, captions, dialogues, benchmark items and text.</summary>
public static class WorldBuilder
{
    /// <summary>The English instructions of the stage-1 caption samples, in the manner of LLaVA's brief-description prompts.</summary>
    internal static readonly string[] CaptionPrompts =
    [
        "Describe the image briefly.",
        "Give a short description of this image.",
        "What does this picture show? Answer in one sentence.",
        "Summarize the content of the image in one sentence.",
        "Write a brief caption for this image.",
        "Provide a concise description of the picture.",
    ];

    /// <summary>Builds the world (fast: no pixels are drawn here).</summary>
    public static WorldData Build(WorldOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var english = WorldLanguage.Get("en");
        ulong seed = options.Seed;

        var images = new List<WorldImage>(options.Stage1Count + options.Stage2Count);
        var stage1 = new List<LlavaSample>(options.Stage1Count);
        for (int i = 0; i < options.Stage1Count; i++)
        {
            var rng = WorldRandom.For(seed, WorldStream.Stage1Scene, i);
            var scene = SceneSampler.Sample(rng);
            var caption = english.Caption(scene, rng.Next(1 << 16));
            var prompt = WorldRandom.For(seed, WorldStream.Stage1Prompt, i).Pick(CaptionPrompts);
            var path = ImagePath("stage1", i);
            images.Add(new WorldImage(path, "stage1", scene, caption));
            stage1.Add(new LlavaSample(Id("stage1", i), path, "en", [new("human", "<image>\n" + prompt), new("gpt", caption)]));
        }

        var languages = Stage2Languages(options);
        var stage2 = new List<LlavaSample>(options.Stage2Count);
        for (int i = 0; i < options.Stage2Count; i++)
        {
            var scene = SceneSampler.Sample(WorldRandom.For(seed, WorldStream.Stage2Scene, i));
            var rng = WorldRandom.For(seed, WorldStream.Stage2Dialogue, i);
            var language = languages[i];
            var path = ImagePath("stage2", i);
            images.Add(new WorldImage(path, "stage2", scene, english.Caption(scene, rng.Next(1 << 16))));
            var turns = Dialogue(scene, language, rng, 1 + rng.Next(options.MaxTurns), options.MultipleChoiceFraction);
            turns[0] = turns[0] with { Value = "<image>\n" + turns[0].Value };
            stage2.Add(new LlavaSample(Id("stage2", i), path, language.Code, turns));
        }

        var benchmark = new List<BenchmarkItem>(options.BenchmarkCount);
        for (int i = 0; i < options.BenchmarkCount; i++) benchmark.Add(BenchmarkItemAt(seed, i));

        var text = new List<TextDocument>(options.TextScenes * WorldLanguage.All.Count);
        for (int i = 0; i < options.TextScenes; i++)
        {
            // One scene told in every language: parallel text, which ties the languages' words to the same facts.
            var scene = SceneSampler.Sample(WorldRandom.For(seed, WorldStream.TextScene, i));
            for (int l = 0; l < WorldLanguage.All.Count; l++)
            {
                var language = WorldLanguage.All[l];
                var rng = WorldRandom.For(seed, WorldStream.TextDialogue, i, l);
                string id = $"text-{i.ToString("D6", CultureInfo.InvariantCulture)}-{language.Code}";
                if (options.TextFormat == WorldTextFormat.ChatMl)
                {
                    text.Add(new TextDocument(id, language.Code, ChatDocument(scene, language, english, rng, options.MultipleChoiceFraction)));
                    continue;
                }
                var lines = new List<string> { language.Caption(scene, rng.Next(1 << 16)) };
                foreach (var turn in Dialogue(scene, language, rng, 1 + rng.Next(2), options.MultipleChoiceFraction)) lines.Add(turn.Value);
                text.Add(new TextDocument(id, language.Code, string.Join("\n", lines)));
            }
        }
        return new WorldData(options, images, stage1, stage2, benchmark, text);
    }

    /// <summary>
    /// Benchmark item <paramref name="index"/>: categories take turns; a scene that cannot ask the item's
    /// category (only Position can fail, when no colour–shape pair is unique) is redrawn from the next sub-stream.
    /// </summary>
    internal static BenchmarkItem BenchmarkItemAt(ulong seed, int index)
    {
        var category = QuestionCatalog.Categories[index % QuestionCatalog.Categories.Length];
        for (int attempt = 0; ; attempt++)
        {
            var rng = WorldRandom.For(seed, WorldStream.BenchmarkScene, index, attempt);
            var scene = SceneSampler.Sample(rng);
            if (QuestionCatalog.Draw(scene, category, rng) is not { } question) continue;
            var choice = QuestionCatalog.WithOptions(question, rng);
            return new BenchmarkItem(index, scene, choice, rng.Next(1 << 16));
        }
    }

    /// <summary>The language of each stage-2 sample: exact per-language counts, in a seeded shuffled order.</summary>
    private static WorldLanguage[] Stage2Languages(WorldOptions options)
    {
        var counts = options.Stage2CountsPerLanguage();
        var order = new List<WorldLanguage>(options.Stage2Count);
        for (int l = 0; l < counts.Length; l++) order.AddRange(Enumerable.Repeat(WorldLanguage.All[l], counts[l]));
        WorldRandom.For(options.Seed, WorldStream.Stage2Languages, 0).Shuffle(order);
        return order.ToArray();
    }

    /// <summary>
    /// A ChatML text document (<see cref="WorldTextFormat.ChatMl"/>): the scene's description in
    /// <paramref name="language"/> opens the first user turn, where a multimodal prompt has its image; the turn
    /// asks, a third of the time, for a brief English caption (the stage-1 prompts and captions, so describing
    /// a scene given in any language is learnt as a task), otherwise a question; then up to two more questions.
    /// </summary>
    private static string ChatDocument(Scene scene, WorldLanguage language, WorldLanguage english, WorldRandom rng, double choiceFraction)
    {
        string description = language.Caption(scene, rng.Next(1 << 16));
        var turns = new List<ChatTurn>();
        bool caption = rng.Chance(1.0 / 3);
        // Several questions per description: the answers are what the model must learn to read off the scene.
        int questions = caption ? rng.Next(3) : 1 + rng.Next(3);
        if (caption)
        {
            turns.Add(new ChatTurn(ChatRole.User, description + "\n" + rng.Pick(CaptionPrompts)));
            turns.Add(new ChatTurn(ChatRole.Assistant, english.Caption(scene, rng.Next(1 << 16))));
        }
        var dialogue = questions == 0 ? [] : Dialogue(scene, language, rng, questions, choiceFraction);
        for (int t = 0; t < dialogue.Count; t++)
        {
            string said = t == 0 && !caption ? description + "\n" + dialogue[t].Value : dialogue[t].Value;
            turns.Add(new ChatTurn(t % 2 == 0 ? ChatRole.User : ChatRole.Assistant, said));
        }
        return ChatMl.Render(turns);
    }

    /// <summary>Question–answer turns about the scene, each about a different category, open or multiple choice.</summary>
    private static List<LlavaTurn> Dialogue(Scene scene, WorldLanguage language, WorldRandom rng, int count, double choiceFraction)
    {
        var turns = new List<LlavaTurn>(2 * count);
        var asked = new HashSet<QuestionCategory>();
        for (int t = 0; t < count; t++)
        {
            var question = QuestionCatalog.Draw(scene, rng, asked);
            asked.Add(question.Category);
            int variant = rng.Next(1 << 16);
            if (rng.Chance(choiceFraction))
            {
                var choice = QuestionCatalog.WithOptions(question, rng);
                turns.Add(new("human", language.ChoicePrompt(choice, variant)));
                turns.Add(new("gpt", choice.CorrectLetter.ToString()));
            }
            else
            {
                turns.Add(new("human", language.OpenPrompt(question, variant)));
                turns.Add(new("gpt", language.Answer(question, question.Answer)));
            }
        }
        return turns;
    }

    private static string ImagePath(string split, int i) => $"images/{split}/{i.ToString("D6", CultureInfo.InvariantCulture)}.png";

    private static string Id(string split, int i) => $"{split}-{i.ToString("D6", CultureInfo.InvariantCulture)}";
}
