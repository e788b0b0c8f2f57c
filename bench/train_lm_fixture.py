"""Writes the GPU scripts' train-lm inputs into the folder given: text.jsonl (300 documents of a small vocabulary, fixed
seed) and init.json (a tiny Qwen2 config), for the 20-step GPU-against-CPU loss comparison (bench/cuda-on-device*.sh)."""
import json
import random
import sys

r = random.Random(7)
words = "the a parrot flies over red green blue river city market speaks sings quickly slowly and then small large old new".split()
with open(sys.argv[1] + "/text.jsonl", "w") as f:
    for _ in range(300):
        f.write(json.dumps({"text": " ".join(r.choice(words) for _ in range(r.randint(20, 60))) + "."}) + "\n")
json.dump({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "rope_theta": 10000.0, "max_position_embeddings": 512, "tie_word_embeddings": False}, open(sys.argv[1] + "/init.json", "w"))
