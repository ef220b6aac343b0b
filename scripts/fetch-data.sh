#!/usr/bin/env bash
# Download the public train/dev files that scripts/convert_data.py reads, from the
# commits documented in MODEL_CARD.md, into DEST in their original layout.
#   scripts/fetch-data.sh DEST && python3 scripts/convert_data.py DEST data/converted
set -euo pipefail
dest=${1:?usage: scripts/fetch-data.sh DEST}

# get OWNER/REPO COMMIT PATH DEST_PATH
get() {
  mkdir -p "$(dirname "$dest/$4")"
  curl -fsSL --retry 3 -o "$dest/$4.tmp" "https://raw.githubusercontent.com/$1/$2/$3"
  mv "$dest/$4.tmp" "$dest/$4"
}

repo=fhamborg/NewsMTSC c=b9d9b79704ed1b35cecaf1d7c2343dc1bd734fb7
get $repo $c LICENSE newsmtsc/LICENSE
get $repo $c NewsSentiment/controller_data/datasets/NewsMTSC-dataset/train.jsonl \
  newsmtsc/NewsSentiment/controller_data/datasets/NewsMTSC-dataset/train.jsonl
for v in mt rw; do
  p=NewsSentiment/experiments/default/datasets/newsmtsc-$v/dev.jsonl
  get $repo $c $p newsmtsc/$p
done

repo=cardiffnlp/tweeteval c=4fbd22cd78421f05b1ecdb4fc5725bc7a7bd8f66
for t in abortion atheism climate feminist hillary; do
  for f in train_text train_labels val_text val_labels; do
    get $repo $c datasets/stance/$t/$f.txt tweeteval/datasets/stance/$t/$f.txt
  done
done
for f in val_text val_labels; do
  get $repo $c datasets/sentiment/$f.txt tweeteval/datasets/sentiment/$f.txt
done

get emilyallaway/zero-shot-stance e7c4775182b184730f350995f8260579c9e066fe \
  data/VAST/vast_train.csv vast/data/VAST/vast_train.csv

repo=kvssk123/stance-detection-infusing-wiki-knowledge c=746a2b3b40471e41dfcbc28e7daf235d01d96279
for s in train val; do
  for t in trump biden bernie; do
    get $repo $c data/pstance/raw_${s}_$t.csv pstance/data/pstance/raw_${s}_$t.csv
  done
done

for s in train val; do
  get multi-target/RUW ecb2a4579197c5be03092a1b8fa21ead359809ce \
    raw_${s}_Russia_Ukraine.csv ruw/raw_${s}_Russia_Ukraine.csv
done

for f in train valid; do
  get bywords/directed_sentiment_analysis 6a1275f070e40e8d9ae7499963556653c05d439c \
    dataset/$f.txt directed_sentiment/dataset/$f.txt
done

get eventdata/ConfliBERT 0b630014885b9597622082034cc5ab5471b57e5b \
  data/cameo_class/train.tsv conflibert_cameo/data/cameo_class/train.tsv

repo=cbaziotis/datastories-semeval2017-task4 c=faeee5fd1c2cf38e32179a4676dff53ae01adfa8
for y in 2013dev 2013test 2013train 2014sarcasm 2014test 2015test 2015train 2016dev 2016devtest 2016test 2016train; do
  p=dataset/Subtask_A/downloaded/twitter-$y-A.tsv
  get $repo $c $p semeval2017_task4a/$p
done
echo "downloaded into $dest"
