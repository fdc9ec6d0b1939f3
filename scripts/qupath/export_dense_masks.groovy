/*
 * histoseg: export a dense label mask of the current image for training (QuPath 0.4 or later).
 *
 * Run from Automate > Script editor (Run, or Run for project to do every image). Writes
 * <project>/masks/<image name>.tif: one 8-bit value per pixel, the class index histoseg uses, and
 * 255 (unlabelled) where no annotation lies. List it in the slide table as a dense mask:
 *
 *   slide,labels,kind,split,mpp
 *   slides/A.svs,masks/A.tif,dense,train,
 *
 * histoseg reads dense masks at the slide's level-0 resolution (docs/labels.md), so DOWNSAMPLE is 1.
 * A mask smaller than its slide (a labelled region) goes with label_offset_x/label_offset_y.
 * Annotations whose class is not below are left out (unlabelled); with data.value_map in the config
 * other values can be used, but these are histoseg's defaults.
 */
import qupath.lib.images.servers.LabeledImageServer

double DOWNSAMPLE = 1.0   // level-0 pixels per mask pixel: histoseg needs 1

// histoseg's classes and their values (histoseg.KIDNEY_CLASSES; 255 = histoseg.IGNORE_INDEX)
def LABELS = [
    'background'  : 0,
    'interstitium': 1,
    'tubules'     : 2,
    'glomeruli'   : 3,
    'other'       : 4,
]
int UNLABELLED = 255

def imageData = getCurrentImageData()
def name = GeneralTools.getNameWithoutExtension(imageData.getServer().getMetadata().getName())
def folder = buildFilePath(PROJECT_BASE_DIR, 'masks')
mkdirs(folder)

def builder = new LabeledImageServer.Builder(imageData)
    .backgroundLabel(UNLABELLED, ColorTools.WHITE)
    .downsample(DOWNSAMPLE)
    .multichannelOutput(false)   // one value per pixel, not one channel per class
LABELS.each { className, value -> builder.addLabel(className, value) }
def server = builder.build()

def path = buildFilePath(folder, name + '.tif')
writeImage(server, path)
print "histoseg mask: ${path} (" + LABELS.collect { k, v -> "${v} ${k}" }.join(', ') + ", ${UNLABELLED} unlabelled)"
