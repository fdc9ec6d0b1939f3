/*
 * histoseg: place grid points to classify, for training labels (kind=points) in QuPath 0.4 or later.
 *
 * Select the annotation(s) to label (the tissue region; nothing selected = the whole image) and run
 * from Automate > Script editor. Adds one unclassified point annotation every SPACING_UM microns
 * inside them, named p0001, p0002, ... Then give each point the class under it (select the points,
 * Set class; histoseg's class names below), and File > Export objects as GeoJSON. The slide table
 * row: slides/A.svs,labels/A.geojson,points,train,
 *
 * For counting points that give an interval of the interstitial fraction, use `histoseg sample`
 * instead (docs/intervals.md): it places them by a recorded design that the estimate needs.
 */
import qupath.lib.objects.PathObjects
import qupath.lib.regions.ImagePlane
import qupath.lib.roi.ROIs

double SPACING_UM = 20.0   // configs/kidney_grid.yaml's grid_spacing_um

// The classes histoseg reads (histoseg.KIDNEY_CLASSES, values 0..4); created if missing
def CLASSES = ['background', 'interstitium', 'tubules', 'glomeruli', 'other']

def imageData = getCurrentImageData()
def server = imageData.getServer()
double mpp = server.getPixelCalibration().getAveragedPixelSizeMicrons()
if (Double.isNaN(mpp))
    throw new IllegalStateException('the image has no pixel size; set it (Image tab) before placing points')
double step = SPACING_UM / mpp   // level-0 pixels

def regions = getSelectedObjects().findAll { it.isAnnotation() && it.hasROI() && it.getROI().isArea() }
def plane = ImagePlane.getDefaultPlane()
def areas = regions ? regions.collect { it.getROI() } : [ROIs.createRectangleROI(0, 0, server.getWidth(), server.getHeight(), plane)]

def available = getQuPath()?.getAvailablePathClasses()
CLASSES.each { name ->
    def pathClass = getPathClass(name)
    if (available != null && !available.contains(pathClass)) available.add(pathClass)
}

def points = []
int k = 0
areas.each { roi ->
    for (double y = Math.ceil(roi.getBoundsY() / step) * step; y < roi.getBoundsY() + roi.getBoundsHeight(); y += step) {
        for (double x = Math.ceil(roi.getBoundsX() / step) * step; x < roi.getBoundsX() + roi.getBoundsWidth(); x += step) {
            if (!roi.contains(x, y)) continue
            def point = PathObjects.createAnnotationObject(ROIs.createPointsROI(x, y, plane))
            point.setName(String.format('p%04d', ++k))
            points << point
        }
    }
}
addObjects(points)
print "histoseg grid: ${points.size()} points every ${SPACING_UM} µm (${step} px); classify them, then export as GeoJSON"
